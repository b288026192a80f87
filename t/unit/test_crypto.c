/* Unit tests: token hash, constant-time compare, hex, key files. */

#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sodium.h>

#include "tap.h"
#include "sa_crypto.h"


static void
test_hash(void)
{
    uint8_t  h[SA_HASH_LEN], g[SA_HASH_LEN];
    char     hex[SA_HASH_HEX_LEN + 1];
    size_t   i;
    int      equal_after_flip = 0;

    sa_token_hash((const unsigned char *) "abc", 3, h);
    sa_hex_encode(h, SA_HASH_LEN, hex);
    is_str(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319",
           "BLAKE2b-256 test vector for \"abc\"");

    ok(sa_hex_decode(hex, strlen(hex), g, SA_HASH_LEN) == 0
       && memcmp(g, h, SA_HASH_LEN) == 0, "hex round trip");
    ok(sa_hex_decode(hex, strlen(hex) - 1, g, SA_HASH_LEN) != 0,
       "short hex rejected");
    hex[5] = 'g';
    ok(sa_hex_decode(hex, strlen(hex), g, SA_HASH_LEN) != 0,
       "non-hex character rejected");

    memcpy(g, h, SA_HASH_LEN);
    ok(sa_hash_equal(h, g), "equal hashes compare equal");

    for (i = 0; i < SA_HASH_LEN; i++) {
        memcpy(g, h, SA_HASH_LEN);
        g[i] ^= 0x01;
        equal_after_flip += sa_hash_equal(h, g);
    }
    is_long(equal_after_flip, 0, "a one-bit difference anywhere is unequal");
}


static int
write_file(const char *path, const char *content)
{
    FILE  *f = fopen(path, "w");

    if (f == NULL) {
        return -1;
    }
    fputs(content, f);
    return fclose(f);
}


static int
file_mode(const char *path)
{
    struct stat  st;

    return stat(path, &st) == 0 ? (int) (st.st_mode & 0777) : -1;
}


static void
test_keys(const char *dir)
{
    char     path[512], spath[512], vpath[512], err[256];
    uint8_t  sk[SA_SECRETKEY_LEN], pk[SA_PUBLICKEY_LEN], sig[64];
    uint8_t  before[SA_PUBLICKEY_LEN];

    snprintf(spath, sizeof(spath), "%s/signing.key", dir);
    snprintf(vpath, sizeof(vpath), "%s/verify.key", dir);

    ok(sa_key_generate(dir, err, sizeof(err)) == 0, "key pair generated");
    is_long(file_mode(spath), 0600, "signing.key is 0600");
    is_long(file_mode(vpath), 0644, "verify.key is 0644");

    ok(sa_key_load(spath, SA_KEY_SIGNING, sk, err, sizeof(err)) == 0,
       "signing key loads");
    ok(sa_key_load(vpath, SA_KEY_VERIFY, pk, err, sizeof(err)) == 0,
       "verify key loads");
    ok(memcmp(sk + 32, pk, 32) == 0, "verify key belongs to the signing key");

    crypto_sign_detached(sig, NULL, (const unsigned char *) "m", 1, sk);
    ok(crypto_sign_verify_detached(sig, (const unsigned char *) "m", 1, pk)
       == 0, "a signature made with the loaded key verifies");

    memcpy(before, pk, sizeof(pk));
    ok(sa_key_generate(dir, err, sizeof(err)) != 0
       && strstr(err, "exists") != NULL, "existing keys are not overwritten");
    ok(sa_key_load(vpath, SA_KEY_VERIFY, pk, err, sizeof(err)) == 0
       && memcmp(before, pk, sizeof(pk)) == 0, "and stay unchanged");

    ok(sa_key_load(spath, SA_KEY_VERIFY, pk, err, sizeof(err)) != 0
       && strstr(err, "signing key") != NULL,
       "signing key given as verify key is named as such: %s", err);
    ok(sa_key_load(vpath, SA_KEY_SIGNING, sk, err, sizeof(err)) != 0
       && strstr(err, "verify key") != NULL,
       "verify key given as signing key is named as such: %s", err);

    chmod(spath, 0640);
    ok(sa_key_load(spath, SA_KEY_SIGNING, sk, err, sizeof(err)) != 0
       && strstr(err, "chmod 600") != NULL && strstr(err, "0640") != NULL,
       "a group-readable signing key is refused, saying how to fix it: %s",
       err);
    chmod(spath, 0604);
    ok(sa_key_load(spath, SA_KEY_SIGNING, sk, err, sizeof(err)) != 0,
       "a world-readable signing key is refused");
    chmod(spath, 0600);
    ok(sa_key_load(spath, SA_KEY_SIGNING, sk, err, sizeof(err)) == 0,
       "mode 0600 loads again");
    chmod(vpath, 0600);
    ok(sa_key_load(vpath, SA_KEY_VERIFY, pk, err, sizeof(err)) == 0,
       "a verify key loads whatever its mode");
    chmod(vpath, 0644);

    snprintf(path, sizeof(path), "%s/missing.key", dir);
    ok(sa_key_load(path, SA_KEY_VERIFY, pk, err, sizeof(err)) != 0
       && strstr(err, "No such file") != NULL, "missing file: %s", err);

    snprintf(path, sizeof(path), "%s/short.key", dir);
    write_file(path, "sa-verify-key-v1 AAAA\n");
    ok(sa_key_load(path, SA_KEY_VERIFY, pk, err, sizeof(err)) != 0
       && strstr(err, "wrong key size") != NULL, "short key: %s", err);

    write_file(path, "sa-verify-key-v1 "
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    ok(sa_key_load(path, SA_KEY_VERIFY, pk, err, sizeof(err)) != 0
       && strstr(err, "wrong key size") != NULL, "long key: %s", err);

    write_file(path, "hello\n");
    ok(sa_key_load(path, SA_KEY_VERIFY, pk, err, sizeof(err)) != 0
       && strstr(err, "not a key file") != NULL, "garbage file: %s", err);

    write_file(path, "");
    ok(sa_key_load(path, SA_KEY_VERIFY, pk, err, sizeof(err)) != 0,
       "empty file rejected");

    snprintf(path, sizeof(path), "%s/nodir/x", dir);
    ok(sa_key_generate(path, err, sizeof(err)) != 0,
       "generating into a missing directory fails: %s", err);
}


int
main(void)
{
    char  dir[] = "/tmp/sa-test-keys-XXXXXX";
    char  cmd[64];

    if (sa_crypto_init() != 0 || mkdtemp(dir) == NULL) {
        printf("Bail out! setup failed\n");
        return 1;
    }

    test_hash();
    test_keys(dir);

    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) {
        printf("# could not remove %s\n", dir);
    }

    return done_testing();
}
