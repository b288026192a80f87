/*
 * sa-admin notify: notify.key, the verify key of the worker, and sealing
 * of subscription secrets.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "notify.h"
#include "util.h"
#include "xalloc.h"

#define SA_NOTIFY_KEY_FILE_MAX  256

static const char  *sa_notify_key_file;
static const char  *sa_verify_key_file;
static uint8_t      sa_notify_key_bytes[SA_NOTIFY_KEY_LEN];
static uint8_t      sa_verify_key_bytes[SA_PUBLICKEY_LEN];


void
sa_notify_key_path(const char *path)
{
    sa_notify_key_file = path;
}


void
sa_verify_key_path(const char *path)
{
    sa_verify_key_file = path;
}


int
sa_notify_key_given(void)
{
    const char  *env = getenv("SA_NOTIFY_KEY");

    return sa_notify_key_file != NULL || (env != NULL && *env != '\0');
}


static void
sa_notify_key_wipe(void)
{
    sodium_memzero(sa_notify_key_bytes, sizeof(sa_notify_key_bytes));
}


static int
sa_notify_key_parse(const char *buf, size_t len, uint8_t *key)
{
    size_t  label = strlen(SA_NOTIFY_KEY_LABEL), got;

    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) {
        len--;
    }

    if (len <= label + 1 || memcmp(buf, SA_NOTIFY_KEY_LABEL, label) != 0
        || buf[label] != ' ')
    {
        return -1;
    }

    return sodium_base642bin(key, SA_NOTIFY_KEY_LEN, buf + label + 1,
                             len - label - 1, NULL, &got, NULL,
                             sodium_base64_VARIANT_ORIGINAL) != 0
           || got != SA_NOTIFY_KEY_LEN ? -1 : 0;
}


const uint8_t *
sa_notify_key_or_exit(void)
{
    static int   loaded;
    char         buf[SA_NOTIFY_KEY_FILE_MAX + 1];
    const char  *path = sa_notify_key_file;
    struct stat  st;
    ssize_t      n;
    int          fd, rc;

    if (loaded) {
        return sa_notify_key_bytes;
    }

    if (path == NULL) {
        path = getenv("SA_NOTIFY_KEY");
    }

    if (path == NULL || *path == '\0') {
        sa_die(SA_EXIT_USAGE, "no notify key: use --notify-key FILE or "
               "SA_NOTIFY_KEY (see 'sa-admin key generate')");
    }

    /* O_NONBLOCK: a FIFO must not block the open; refused below */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd == -1) {
        sa_die(SA_EXIT_USAGE, "notify key: cannot open \"%s\": %s",
               path, strerror(errno));
    }

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        sa_die(SA_EXIT_USAGE, "notify key \"%s\" is not a regular file",
               path);
    }

    if (fstat(fd, &st) != 0 || (st.st_mode & 077)) {
        close(fd);
        sa_die(SA_EXIT_USAGE, "notify key \"%s\" is accessible by "
               "others: fix with chmod 600 \"%s\"", path, path);
    }

    n = read(fd, buf, sizeof(buf));
    close(fd);

    rc = n <= 0 || n > SA_NOTIFY_KEY_FILE_MAX
         || sa_notify_key_parse(buf, n, sa_notify_key_bytes) != 0;
    sodium_memzero(buf, sizeof(buf));

    if (rc) {
        sa_die(SA_EXIT_USAGE, "notify key \"%s\": not a key file "
               "(expected \"%s <base64>\")", path, SA_NOTIFY_KEY_LABEL);
    }

    loaded = 1;
    atexit(sa_notify_key_wipe);
    return sa_notify_key_bytes;
}


int
sa_notify_key_generate(const char *dir, char *err, size_t errlen)
{
    uint8_t  raw[SA_NOTIFY_KEY_LEN];
    char     b64[sodium_base64_ENCODED_LEN(SA_NOTIFY_KEY_LEN,
                                           sodium_base64_VARIANT_ORIGINAL)];
    char     path[4096], line[128];
    int      fd, n, rc = 0;

    snprintf(path, sizeof(path), "%s/notify.key", dir);
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(b64, sizeof(b64), raw, sizeof(raw),
                      sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(line, sizeof(line), "%s %s\n", SA_NOTIFY_KEY_LABEL, b64);

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd == -1) {
        snprintf(err, errlen, "cannot create \"%s\": %s", path,
                 strerror(errno));
        rc = -1;

    } else if (fchmod(fd, 0600) != 0 || write(fd, line, n) != n
               || fsync(fd) != 0)
    {
        snprintf(err, errlen, "cannot write \"%s\": %s", path,
                 strerror(errno));
        close(fd);
        unlink(path);
        rc = -1;

    } else {
        rc = close(fd);
    }

    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(b64, sizeof(b64));
    sodium_memzero(line, sizeof(line));
    return rc;
}


const uint8_t *
sa_verify_key_or_exit(sa_admin_t *sa)
{
    static int   loaded;
    const char  *path = sa_verify_key_file;
    char         err[600];

    if (loaded) {
        return sa_verify_key_bytes;
    }

    if (path == NULL) {
        path = getenv("SA_VERIFY_KEY");
    }

    if (path == NULL || *path == '\0') {
        /* the signing key holds the verify key too */
        memcpy(sa_verify_key_bytes, sa_signing_key_or_exit(sa) + 32,
               SA_PUBLICKEY_LEN);

    } else if (sa_key_load(path, SA_KEY_VERIFY, sa_verify_key_bytes, err,
                           sizeof(err)) != 0)
    {
        sa_die(SA_EXIT_USAGE, "verify key %s", err);
    }

    loaded = 1;
    return sa_verify_key_bytes;
}


char *
sa_seal(const uint8_t key[SA_NOTIFY_KEY_LEN], const char *plain, size_t len)
{
    size_t          blen = crypto_secretbox_NONCEBYTES
                           + crypto_secretbox_MACBYTES + len;
    unsigned char  *box = sa_xmalloc(blen);
    size_t          olen = sodium_base64_ENCODED_LEN(blen,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char           *out = sa_xmalloc(sizeof(SA_SEALED_PREFIX) + olen);

    randombytes_buf(box, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(box + crypto_secretbox_NONCEBYTES,
                          (const unsigned char *) plain, len, box, key);

    memcpy(out, SA_SEALED_PREFIX, sizeof(SA_SEALED_PREFIX) - 1);
    sodium_bin2base64(out + sizeof(SA_SEALED_PREFIX) - 1, olen, box, blen,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(box);

    return out;
}


char *
sa_unseal(const uint8_t key[SA_NOTIFY_KEY_LEN], const char *sealed)
{
    size_t          slen, blen;
    unsigned char  *box;
    char           *plain;

    if (sealed == NULL
        || strncmp(sealed, SA_SEALED_PREFIX, sizeof(SA_SEALED_PREFIX) - 1))
    {
        return NULL;
    }

    sealed += sizeof(SA_SEALED_PREFIX) - 1;
    slen = strlen(sealed);
    box = sa_xmalloc(slen + 1);

    if (sodium_base642bin(box, slen, sealed, slen, NULL, &blen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || blen < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
    {
        free(box);
        return NULL;
    }

    plain = sa_xmalloc(blen - crypto_secretbox_NONCEBYTES
                       - crypto_secretbox_MACBYTES + 1);

    if (crypto_secretbox_open_easy((unsigned char *) plain,
                                   box + crypto_secretbox_NONCEBYTES,
                                   blen - crypto_secretbox_NONCEBYTES, box,
                                   key) != 0)
    {
        free(box);
        free(plain);
        return NULL;
    }

    plain[blen - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES] = 0;
    free(box);
    return plain;
}
