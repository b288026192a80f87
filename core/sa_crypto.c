#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sodium.h>

#include "sa_crypto.h"

#define SA_KEY_FILE_MAX  256


int
sa_crypto_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}


void
sa_token_hash(const unsigned char *token, size_t len, uint8_t out[SA_HASH_LEN])
{
    crypto_generichash(out, SA_HASH_LEN, token, len, NULL, 0);
}


int
sa_hash_equal(const uint8_t a[SA_HASH_LEN], const uint8_t b[SA_HASH_LEN])
{
    return crypto_verify_32(a, b) == 0;
}


void
sa_hex_encode(const uint8_t *bin, size_t len, char *hex)
{
    sodium_bin2hex(hex, len * 2 + 1, bin, len);
}


int
sa_hex_decode(const char *hex, size_t hexlen, uint8_t *bin, size_t len)
{
    size_t  got;

    if (hexlen != len * 2) {
        return -1;
    }

    if (sodium_hex2bin(bin, len, hex, hexlen, NULL, &got, NULL) != 0
        || got != len)
    {
        return -1;
    }

    return 0;
}


int
sa_key_parse(const char *buf, size_t len, sa_key_kind_t kind, uint8_t *key,
    char *err, size_t errlen)
{
    const char     *label, *other, *b64;
    size_t          label_len, b64_len, got;
    uint8_t         raw[32], pk[SA_PUBLICKEY_LEN];

    label = (kind == SA_KEY_SIGNING) ? SA_SIGNING_KEY_LABEL : SA_VERIFY_KEY_LABEL;
    other = (kind == SA_KEY_SIGNING) ? SA_VERIFY_KEY_LABEL : SA_SIGNING_KEY_LABEL;
    label_len = strlen(label);

    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'
                       || buf[len - 1] == ' '))
    {
        len--;
    }

    if (len > strlen(other) && memcmp(buf, other, strlen(other)) == 0) {
        snprintf(err, errlen, "is a %s key, expected a %s key",
                 kind == SA_KEY_SIGNING ? "verify" : "signing",
                 kind == SA_KEY_SIGNING ? "signing" : "verify");
        return -1;
    }

    if (len <= label_len + 1 || memcmp(buf, label, label_len) != 0
        || buf[label_len] != ' ')
    {
        snprintf(err, errlen, "not a key file (expected \"%s <base64>\")",
                 label);
        return -1;
    }

    b64 = buf + label_len + 1;
    b64_len = len - label_len - 1;

    if (sodium_base642bin(raw, sizeof(raw), b64, b64_len, NULL, &got, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0
        || got != sizeof(raw))
    {
        snprintf(err, errlen, "wrong key size (expected 32 bytes of base64)");
        sodium_memzero(raw, sizeof(raw));
        return -1;
    }

    if (kind == SA_KEY_SIGNING) {
        crypto_sign_seed_keypair(pk, key, raw);

    } else {
        memcpy(key, raw, SA_PUBLICKEY_LEN);
    }

    sodium_memzero(raw, sizeof(raw));
    return 0;
}


int
sa_key_load(const char *path, sa_key_kind_t kind, uint8_t *key, char *err,
    size_t errlen)
{
    int          fd;
    char         buf[SA_KEY_FILE_MAX + 1];
    ssize_t      n;
    struct stat  st;

    /* O_NONBLOCK: a FIFO or a device must not block the open; refused below */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd == -1) {
        snprintf(err, errlen, "cannot open \"%s\": %s", path, strerror(errno));
        return -1;
    }

    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat \"%s\": %s", path, strerror(errno));
        close(fd);
        return -1;
    }

    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "\"%s\" is not a regular file", path);
        close(fd);
        return -1;
    }

    n = read(fd, buf, sizeof(buf));
    close(fd);

    if (n < 0) {
        snprintf(err, errlen, "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }

    if (n > SA_KEY_FILE_MAX) {
        snprintf(err, errlen, "\"%s\": wrong key size (file too large)", path);
        return -1;
    }

    if (sa_key_parse(buf, (size_t) n, kind, key, err, errlen) != 0) {
        char  reason[128];

        snprintf(reason, sizeof(reason), "%s", err);
        snprintf(err, errlen, "\"%s\": %s", path, reason);
        sodium_memzero(buf, sizeof(buf));
        return -1;
    }

    sodium_memzero(buf, sizeof(buf));

    /* as ssh does with its private keys: a key others can read is not kept */
    if (kind == SA_KEY_SIGNING && (st.st_mode & 077)) {
        sodium_memzero(key, SA_SECRETKEY_LEN);
        snprintf(err, errlen, "\"%s\" is accessible by others (mode %04o): "
                 "a signing key must be readable by its owner only; fix with "
                 "chmod 600 \"%s\"", path, (unsigned) (st.st_mode & 07777),
                 path);
        return -1;
    }

    return 0;
}


static int
sa_key_write(const char *dir, const char *name, mode_t mode, const char *label,
    const uint8_t *raw, char *err, size_t errlen)
{
    char     path[4096], line[128];
    char     b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    int      fd, n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    sodium_bin2base64(b64, sizeof(b64), raw, 32, sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(line, sizeof(line), "%s %s\n", label, b64);

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd == -1) {
        snprintf(err, errlen, "cannot create \"%s\": %s", path,
                 strerror(errno));
        sodium_memzero(line, sizeof(line));
        sodium_memzero(b64, sizeof(b64));
        return -1;
    }

    /* umask may have narrowed the mode; the verify key must stay readable */
    if (fchmod(fd, mode) != 0 || write(fd, line, n) != n || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write \"%s\": %s", path,
                 strerror(errno));
        sodium_memzero(line, sizeof(line));
        sodium_memzero(b64, sizeof(b64));
        close(fd);
        unlink(path);
        return -1;
    }

    sodium_memzero(line, sizeof(line));
    sodium_memzero(b64, sizeof(b64));
    return close(fd);
}


int
sa_key_generate(const char *dir, char *err, size_t errlen)
{
    uint8_t  seed[32], pk[SA_PUBLICKEY_LEN], sk[SA_SECRETKEY_LEN];
    char     path[4096];
    int      rc;

    randombytes_buf(seed, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk, seed);

    rc = sa_key_write(dir, "signing.key", 0600, SA_SIGNING_KEY_LABEL, seed,
                      err, errlen);
    if (rc == 0) {
        rc = sa_key_write(dir, "verify.key", 0644, SA_VERIFY_KEY_LABEL, pk,
                          err, errlen);
        if (rc != 0) {
            /* half a key pair is useless: leave nothing behind */
            snprintf(path, sizeof(path), "%s/signing.key", dir);
            unlink(path);
        }
    }

    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(sk, sizeof(sk));
    return rc;
}
