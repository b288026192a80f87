-- A refused attempt: sa-admin found, in C against the verified records
-- (admin-tool/perm.c), that the acting user lacks a permission, and has
-- this script leave the 'denied' entry (rate-limited in audit_denied).
--   ARGV[4] team, ARGV[5] the permission lacked ('owner' for ownership)
audit_denied(ARGV[4], ARGV[5])
return 'ok'
