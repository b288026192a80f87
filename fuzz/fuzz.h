/*
 * Shared helpers of the libFuzzer targets (fuzz/fuzz_*.c).
 *
 * FUZZ_ASSERT() aborts with the failed condition, so that libFuzzer saves
 * the input as a crash.  fuzz_keys() derives the fixed TEST key pair used to
 * sign fuzz inputs (never a real key: its seed is in this file).
 */

#ifndef SA_FUZZ_H
#define SA_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "sa_crypto.h"

#define FUZZ_ASSERT(cond)                                                    \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond,    \
                    __FILE__, __LINE__);                                     \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* 32 bytes: the Ed25519 seed of the fuzzing test key pair */
#define FUZZ_TEST_SEED  "sa-gateway fuzz fixed test seed!"

static uint8_t  fuzz_pk[SA_PUBLICKEY_LEN];
static uint8_t  fuzz_sk[SA_SECRETKEY_LEN];

static inline void
fuzz_keys(void)
{
    if (sodium_init() < 0) {
        abort();
    }

    crypto_sign_seed_keypair(fuzz_pk, fuzz_sk,
                             (const unsigned char *) FUZZ_TEST_SEED);
}

/* the targets that sign or verify derive the test keys once, at start */
#define FUZZ_INIT_TEST_KEYS()                                                \
    int                                                                      \
    LLVMFuzzerInitialize(int *argc, char ***argv)                            \
    {                                                                        \
        (void) argc;                                                         \
        (void) argv;                                                         \
        fuzz_keys();                                                         \
        return 0;                                                            \
    }

/* a NUL-terminated heap copy of exactly size + 1 bytes */
static inline char *
fuzz_cstr(const uint8_t *data, size_t size)
{
    char  *s = malloc(size + 1);

    if (s == NULL) {
        abort();
    }

    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif /* SA_FUZZ_H */
