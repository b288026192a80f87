// sa-admin console
