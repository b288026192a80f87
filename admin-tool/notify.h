/*
 * sa-admin notify: notifications and webhooks (docs/notifications.md).
 *
 * Subscriptions live in Redis as JSON with a public part (for routing and
 * listing) and a sealed part (libsodium secretbox with notify.key): the
 * destinations and the webhook secret are never in Redis in clear.  Events
 * written by sa-admin are signed envelopes (as records are), so that the
 * worker delivers only what sa-admin wrote.
 */

#ifndef SA_ADMIN_NOTIFY_H
#define SA_ADMIN_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "sa_admin.h"
#include "records.h"

#define SA_NOTIFY_KEY_LABEL  "sa-notify-key-v1"
#define SA_NOTIFY_KEY_LEN    32
#define SA_SEALED_PREFIX     "sn1."

/* --notify-key FILE (or SA_NOTIFY_KEY) */
void sa_notify_key_path(const char *path);

/* whether a notify key was named (flag or environment) */
int sa_notify_key_given(void);

/* the notify key, loaded on first use; exits 1 when it is unusable */
const uint8_t *sa_notify_key_or_exit(void);

/* writes DIR/notify.key (0600), never over an existing one; 0 or -1 */
int sa_notify_key_generate(const char *dir, char *err, size_t errlen);

/* "sn1.<base64url(nonce | secretbox)>"; the caller frees it */
char *sa_seal(const uint8_t key[SA_NOTIFY_KEY_LEN], const char *plain,
    size_t len);

/* the plaintext (NUL-terminated, free() it), or NULL when tampered */
char *sa_unseal(const uint8_t key[SA_NOTIFY_KEY_LEN], const char *sealed);

/*
 * Signed events (notify_event.c).
 *
 * A signed event of an account ("kind": "event"), the envelope to hand a
 * script.  app: the one application it is for (signed: the worker
 * delivers it to no other), NULL for an account's event (it goes to the
 * applications the account's signed record grants).  aid NULL: an
 * application's own event (the worker fills in each subscriber).  Takes
 * the reference to data.  The caller frees it.
 */
char *sa_event_seal(sa_admin_t *sa, const char *type, const char *app,
    const char *team, const char *aid, const char *name, const char *email,
    json_t *data);

/* the same for an account record */
char *sa_event_seal_account(sa_admin_t *sa, const char *type,
    sa_account_t *a, json_t *data);

/* the same for a token record's account */
char *sa_event_seal_token(sa_admin_t *sa, const char *type,
    const sa_token_record_t *rec, json_t *data);

/* what an event tells of a token: id, scopes, expires_at; never a secret */
json_t *sa_event_token_json(const sa_token_record_t *rec);

/* event types: the contract's and app.<word>; '*' only when star */
int sa_event_type_valid(const char *s, int star);

/* the worker (notify_worker.c; its parts: notify_worker.h) */
int sa_notify_run(sa_admin_t *sa, int once, int allow_private,
    int concurrency);

/* the verify key of event envelopes and records, for the worker */
const uint8_t *sa_verify_key_or_exit(sa_admin_t *sa);
void sa_verify_key_path(const char *path);

#endif /* SA_ADMIN_NOTIFY_H */
