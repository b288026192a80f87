/*
 * sa-admin key resign: every account and token record re-signed with the
 * current signing key, so that gateways can drop the old verify key.
 *
 * The records are found with SCAN (<prefix>tok:*, then <prefix>acct:*),
 * read with pipelined GETs, SCAN batch by SCAN batch.  Each is judged:
 *
 *   - it verifies with the current key's public half: already done, skipped
 *     (this is what makes the command resumable and idempotent);
 *   - it verifies with an --old-verify-key, and is a valid record of its
 *     kind naming the id it is stored under: its payload is re-signed with
 *     its version bumped, and one script per record (key_resign.lua)
 *     replaces it if the key still holds the very bytes read (else the
 *     record is read and judged again, as sa_retry() does for any change);
 *   - anything else is refused: reported and never re-signed, so that
 *     resign cannot turn a Redis writer's forgery into a genuinely signed
 *     record.
 *
 * Tokens go first, accounts last: until an account is re-signed, sa-admin
 * holding the new key refuses to change it (its record does not verify),
 * instead of meeting its tokens still signed with the old key and treating
 * them as tampered.
 *
 * --team: every record is still read, and a record counts when its signed
 * payload names the team (the team's account set is an unsigned hint).
 */

#define _GNU_SOURCE     /* memmem */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "change.h"
#include "key_resign.h"
#include "records.h"
#include "redis.h"
#include "scan.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

#define SA_RESIGN_OLD_MAX  8
#define SA_RESIGN_SCAN     1000

typedef enum {
    SA_RS_OTHER = 0,     /* not in scope (another team) */
    SA_RS_CURRENT,       /* signed with the current key already */
    SA_RS_REFUSED,       /* reported, never re-signed */
    SA_RS_RESIGN         /* re-signed payload ready */
} sa_rs_verdict_t;

/* the kinds in the order they are re-signed (see above) */
#define SA_RS_KINDS  6

static const sa_kind_t   sa_rs_order[SA_RS_KINDS] = {
    SA_KIND_TOKEN, SA_KIND_ACCOUNT, SA_KIND_TEAM, SA_KIND_MEMBER, SA_KIND_APP,
    SA_KIND_PTOKEN
};
static const char       *sa_rs_kind_key[SA_RS_KINDS] = {
    SA_KEY_TOKEN, SA_KEY_ACCOUNT, SA_KEY_TEAM, SA_KEY_TEAM, SA_KEY_APP,
    SA_KEY_PTOKEN
};

typedef struct {
    const uint8_t  *sk;
    uint8_t         pk[1 + SA_RESIGN_OLD_MAX][SA_PUBLICKEY_LEN];
    int             nold;           /* pk[0] current, pk[1 .. nold] old */
    int             hit;            /* the key that verified last */
    const char     *team;
    char            needle[96];     /* "team":"<team>" */
    size_t          needle_len;
    int             dry_run;

    size_t          read;
    size_t          resigned[SA_RS_KINDS];  /* by kind */
    size_t          legacy;         /* unsigned teams from before 0.4 */
    size_t          current;
    size_t          refused;
    size_t          gone;
    size_t          checkpoints;    /* audit checkpoints re-signed */
    size_t          checkpoints_refused;

    sa_progress_t   progress;
} sa_resign_t;


static size_t
sa_resign_total(sa_resign_t *rs)
{
    size_t  i, n = 0;

    for (i = 0; i < SA_RS_KINDS; i++) {
        n += rs->resigned[i];
    }

    return n;
}


/* a line on stderr every second once the run takes longer than one */
static void
sa_resign_progress(sa_resign_t *rs)
{
    if (!sa_progress_due(&rs->progress)) {
        return;
    }

    fprintf(stderr, "sa-admin: key resign: %zu records read, %zu %s, "
            "%zu already current, %zu refused (%.0f s)\n", rs->read,
            sa_resign_total(rs), rs->dry_run ? "to re-sign" : "re-signed",
            rs->current, rs->refused, sa_progress_elapsed(&rs->progress));
}


static void
sa_resign_refuse(sa_resign_t *rs, sa_kind_t kind, const char *id,
    const char *why)
{
    rs->refused++;
    fprintf(stderr, "sa-admin: %s %s is refused: %s; not re-signed\n",
            sa_kind_name(kind), id, why);
}


/*
 * A verified payload: a valid record of its kind naming id (the core
 * checks of sa_record_check(); a token: its parser), of the team asked
 * for; re-signed into *sealed with its version bumped.
 */
/* a token: the core parser and codec, as a gateway reads it (the bulk) */
static sa_rs_verdict_t
sa_resign_token(sa_resign_t *rs, const char *id, const char *payload,
    size_t plen, char **sealed, const char **why)
{
    sa_token_record_t  *rec = NULL;
    sa_rs_verdict_t     v = SA_RS_RESIGN;

    if (sa_token_record_parse(payload, plen, sa_heap_alloc, NULL, &rec)
        != SA_REC_OK)
    {
        *why = "not a valid token record";
        v = SA_RS_REFUSED;

    } else if (strcmp(rec->id, id) != 0) {
        /* a genuine record copied under another token's key */
        *why = "the record names another token";
        v = SA_RS_REFUSED;

    } else if (rs->team != NULL && strcmp(rec->team.data, rs->team) != 0) {
        v = SA_RS_OTHER;

    } else {
        rec->version++;
        *sealed = sa_token_record_encode(rec, rs->sk);
        if (*sealed == NULL) {
            sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
        }
    }

    free(rec);
    return v;
}


static sa_rs_verdict_t
sa_resign_payload(sa_resign_t *rs, sa_kind_t kind, const char *id,
    const char *payload, size_t plen, char **sealed, const char **why)
{
    json_t             *j;
    const char         *team, *rid;
    sa_rs_verdict_t     v = SA_RS_RESIGN;

    if (kind == SA_KIND_TOKEN) {
        return sa_resign_token(rs, id, payload, plen, sealed, why);
    }

    j = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL);
    rid = json_string_value(json_object_get(j, "id"));
    team = kind == SA_KIND_TEAM ? id
                                : json_string_value(json_object_get(j, "team"));

    if (j != NULL && rid != NULL && strcmp(rid, id) != 0
        && strcmp(json_string_value(json_object_get(j, "kind")) ?: "",
                  sa_kind_name(kind)) == 0)
    {
        /* a genuine record copied under another one's key */
        *why = kind == SA_KIND_ACCOUNT ? "the record names another account"
               : "the record names another one of its kind";
        v = SA_RS_REFUSED;

    } else if (j == NULL || sa_record_check(j, kind, id) != SA_REC_OK) {
        *why = kind == SA_KIND_ACCOUNT ? "not a valid account record"
               : "not a valid record of its kind";
        v = SA_RS_REFUSED;

    } else if (rs->team != NULL && (team == NULL || strcmp(team, rs->team))) {
        v = SA_RS_OTHER;        /* a personal token has no team */

    } else {
        json_object_set_new(j, "version", json_integer(
            json_integer_value(json_object_get(j, "version")) + 1));
        *sealed = sa_record_encode(j, rs->sk);
        if (*sealed == NULL) {
            sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
        }
    }

    json_decref(j);
    return v;
}


/*
 * Judges one record value: already current, to be re-signed (the new
 * envelope in *sealed, free() it), refused (reported here), or not in
 * scope.
 */
static sa_rs_verdict_t
sa_resign_judge(sa_resign_t *rs, sa_kind_t kind, const char *id,
    const char *value, size_t len, char **sealed)
{
    const char       *payload, *why = NULL;
    size_t            plen;
    int               i, k;
    sa_rs_verdict_t   v;

    *sealed = NULL;

    /* sa-admin writes compact JSON: only a record of the team can match */
    if (rs->team != NULL && kind != SA_KIND_TEAM
        && memmem(value, len, rs->needle, rs->needle_len) == NULL)
    {
        return SA_RS_OTHER;
    }

    /*
     * The key that verified the last record first: most records share it,
     * and the run costs one signature check per record, not two.  Distinct
     * keys never verify the same signature, so the order decides nothing.
     */
    for (i = 0; i <= rs->nold; i++) {
        k = (rs->hit + i) % (rs->nold + 1);

        if (sa_envelope_open(value, len, rs->pk[k], &payload, &plen)
            != SA_REC_OK)
        {
            continue;
        }

        rs->hit = k;

        if (k == 0) {
            return SA_RS_CURRENT;
        }

        v = sa_resign_payload(rs, kind, id, payload, plen, sealed, &why);

        if (v == SA_RS_REFUSED) {
            sa_resign_refuse(rs, kind, id, why);
        }

        return v;
    }

    sa_resign_refuse(rs, kind, id, "it verifies with neither the signing "
                     "key nor an --old-verify-key (written by something "
                     "other than sa-admin, or signed with a key not given)");
    return SA_RS_REFUSED;
}


/* appends the script that replaces value by sealed */
static void
sa_resign_append(sa_admin_t *sa, sa_kind_t kind, const char *id,
    const char *value, size_t len, const char *sealed)
{
    sa_args_t  args;

    sa_change_args(sa, &args);
    sa_args_add(&args, sa_kind_name(kind));
    sa_args_add(&args, id);
    sa_args_addn(&args, value, len);
    sa_args_add(&args, sealed);
    sa_xscript_append(sa, &sa_lua_key_resign, 0, &args);
    sa_args_free(&args);
}


/* the reply of one key_resign.lua: counted; SA_CONFLICT to read again */
static int
sa_resign_reply(sa_admin_t *sa, sa_resign_t *rs, sa_kind_t kind)
{
    redisReply  *r;
    int          rc;

    r = sa_xredis_reply(sa);
    rc = sa_change_judge(r);

    if (r->type == REDIS_REPLY_ERROR) {
        /* judged above */

    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        rs->resigned[kind]++;

    } else {
        rs->gone++;             /* expired or deleted since the SCAN */
    }

    freeReplyObject(r);
    return rc;
}


typedef struct {
    sa_resign_t    *rs;
    sa_kind_t       kind;
    const char     *id;
} sa_resign_one_t;


/* appends the read of one record: GET, or a member's HGET */
static void
sa_resign_read(sa_admin_t *sa, sa_kind_t kind, const char *id)
{
    sa_args_t    args;
    const char  *slash;

    sa_args_init(&args);

    if (kind == SA_KIND_MEMBER) {
        slash = strchr(id, '/');
        sa_args_add(&args, "HGET");
        sa_args_addf(&args, "%s" SA_KEY_TEAM "%.*s" SA_KEY_MEMBERS,
                     sa->prefix, (int) (slash - id), id);
        sa_args_add(&args, slash + 1);
    } else {
        sa_args_add(&args, "GET");
        sa_args_addf(&args, "%s%s%s", sa->prefix, sa_rs_kind_key[kind], id);
    }

    sa_xredis_append(sa, &args);
    sa_args_free(&args);
}


/* one record read, judged and replaced on its own (after a conflict) */
static int
sa_resign_one(sa_admin_t *sa, void *data)
{
    sa_resign_one_t  *o = data;
    redisReply       *r;
    char             *sealed;
    int               rc = SA_EXIT_OK;

    sa_resign_read(sa, o->kind, o->id);
    r = sa_xredis_reply(sa);

    if (r->type != REDIS_REPLY_STRING) {
        o->rs->gone++;
        freeReplyObject(r);
        return SA_EXIT_OK;
    }

    switch (sa_resign_judge(o->rs, o->kind, o->id, r->str, r->len, &sealed))
    {
    case SA_RS_CURRENT:
        o->rs->current++;
        break;

    case SA_RS_RESIGN:
        sa_resign_append(sa, o->kind, o->id, r->str, r->len, sealed);
        rc = sa_resign_reply(sa, o->rs, o->kind);
        break;

    default:
        break;
    }

    free(sealed);
    freeReplyObject(r);
    return rc;
}


/*
 * The ids of the records among a SCAN batch's keys: tok:<id>, acct:<id>
 * (not tok:<id>:used, acct:<id>:tokens), team:<team>, app:<app>; for
 * members, the team:<team>:members hashes are read (one pipeline) and each
 * field is a record "<team>/<user>".  The ids are malloc()ed.
 */
static size_t
sa_resign_ids(sa_admin_t *sa, sa_resign_t *rs, sa_kind_t kind,
    redisReply *keys, char ***out)
{
    size_t        i, j, n, plen, cap, len;
    const char   *rest;
    char        **ids, **teams;
    redisReply   *r;
    sa_args_t     args;

    plen = strlen(sa->prefix) + strlen(sa_rs_kind_key[kind]);
    cap = keys->elements + 1;
    ids = sa_xcalloc(cap, sizeof(char *));
    teams = sa_xcalloc(cap, sizeof(char *));
    n = 0;

    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING
            || keys->element[i]->len <= plen)
        {
            continue;
        }
        rest = keys->element[i]->str + plen;
        len = keys->element[i]->len - plen;

        switch (kind) {
        case SA_KIND_TOKEN:
        case SA_KIND_ACCOUNT:
        case SA_KIND_PTOKEN:
            if (len == SA_TOKEN_ID_LEN
                && sa_token_id_valid(rest, SA_TOKEN_ID_LEN))
            {
                ids[n++] = sa_xstrdup(rest);
            }
            break;

        case SA_KIND_TEAM:
            if (sa_name_valid(rest)) {
                ids[n++] = sa_xstrdup(rest);
            }
            break;

        case SA_KIND_MEMBER:
            if (len > sizeof(SA_KEY_MEMBERS) - 1
                && strcmp(rest + len - (sizeof(SA_KEY_MEMBERS) - 1),
                          SA_KEY_MEMBERS) == 0)
            {
                teams[n] = sa_xstrdup(rest);
                teams[n][len - (sizeof(SA_KEY_MEMBERS) - 1)] = '\0';
                if (sa_name_valid(teams[n])
                    && (rs->team == NULL || strcmp(rs->team, teams[n]) == 0))
                {
                    sa_args_init(&args);
                    sa_args_add(&args, "HKEYS");
                    sa_args_addn(&args, keys->element[i]->str,
                                 keys->element[i]->len);
                    sa_xredis_append(sa, &args);
                    sa_args_free(&args);
                    n++;
                } else {
                    free(teams[n]);
                    teams[n] = NULL;
                }
            }
            break;

        case SA_KIND_APP:
            if (sa_app_valid(rest, len) && strcmp(rest, "*") != 0) {
                ids[n++] = sa_xstrdup(rest);
            }
            break;
        }
    }

    if (kind == SA_KIND_MEMBER) {
        free(ids);
        ids = NULL;
        cap = 0;
        len = 0;
        for (i = 0; i < n; i++) {
            r = sa_xredis_reply(sa);
            for (j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements; j++) {
                if (len + 1 >= cap) {
                    cap = cap ? cap * 2 : 64;
                    ids = sa_xrealloc(ids, cap * sizeof(char *));
                }
                ids[len] = sa_xmalloc(strlen(teams[i]) + 2
                                      + r->element[j]->len);
                sprintf(ids[len++], "%s/%s", teams[i], r->element[j]->str);
            }
            freeReplyObject(r);
            free(teams[i]);
        }
        n = len;
    }

    free(teams);
    *out = ids;
    return n;
}


/*
 * One SCAN batch: the records among keys read with one pipeline, the
 * re-signed ones written with another (one script each), conflicts read
 * and written again one by one.
 */
static int
sa_resign_batch(sa_admin_t *sa, sa_resign_t *rs, sa_kind_t kind,
    redisReply *keys)
{
    size_t            i, n;
    char            **ids;
    redisReply      **vals;
    unsigned char    *sent;
    char             *sealed;
    int               rc, first = SA_EXIT_OK;
    sa_resign_one_t   one;

    n = sa_resign_ids(sa, rs, kind, keys, &ids);
    vals = sa_xcalloc(n + 1, sizeof(redisReply *));
    sent = sa_xcalloc(n + 1, 1);

    for (i = 0; i < n; i++) {
        sa_resign_read(sa, kind, ids[i]);
    }

    for (i = 0; i < n; i++) {
        vals[i] = sa_xredis_reply(sa);
    }

    for (i = 0; i < n; i++) {
        if (kind == SA_KIND_TEAM && vals[i]->type == REDIS_REPLY_ERROR) {
            /* WRONGTYPE: a team's hash from before teams were signed */
            rs->legacy++;
            fprintf(stderr, "sa-admin: team %s is unsigned (from before "
                    "team records were signed): sa-admin refuses to change "
                    "it until 'sa-admin team adopt' signs it\n", ids[i]);
            continue;
        }

        if (vals[i]->type != REDIS_REPLY_STRING) {
            continue;                   /* expired since the SCAN */
        }

        rs->read++;

        switch (sa_resign_judge(rs, kind, ids[i], vals[i]->str,
                                vals[i]->len, &sealed))
        {
        case SA_RS_CURRENT:
            rs->current++;
            break;

        case SA_RS_RESIGN:
            if (rs->dry_run) {
                rs->resigned[kind]++;
            } else {
                sa_resign_append(sa, kind, ids[i], vals[i]->str,
                                 vals[i]->len, sealed);
                sent[i] = 1;
            }
            free(sealed);
            break;

        default:
            break;
        }
    }

    /* every reply is read, even after an error, to keep the pipeline whole */
    for (i = 0; i < n; i++) {
        if (!sent[i]) {
            continue;
        }

        rc = sa_resign_reply(sa, rs, kind);
        if (rc == SA_CONFLICT) {
            sent[i] = 2;
        } else if (rc != SA_EXIT_OK && first == SA_EXIT_OK) {
            first = rc;
        }
    }

    for (i = 0; i < n && first == SA_EXIT_OK; i++) {
        if (sent[i] != 2) {
            continue;
        }

        one = (sa_resign_one_t) { rs, kind, ids[i] };
        first = sa_retry(sa, sa_resign_one, &one);
        if (first == SA_CONFLICT) {
            first = sa_fail(SA_EXIT_CONFLICT, "the record of %s %s kept "
                            "changing; retry", sa_kind_name(kind), ids[i]);
        }
    }

    for (i = 0; i < n; i++) {
        freeReplyObject(vals[i]);
        free(ids[i]);
    }
    free(vals);
    free(ids);
    free(sent);

    return first;
}


/* every record of one kind, SCAN batch by SCAN batch */
static int
sa_resign_scan(sa_admin_t *sa, sa_resign_t *rs, sa_kind_t kind)
{
    char         pattern[64];
    sa_scan_t    sc;
    redisReply  *r;
    int          rc = SA_EXIT_OK;

    snprintf(pattern, sizeof(pattern), "%s*", sa_rs_kind_key[kind]);
    sa_scan_start(&sc, sa, SA_RESIGN_SCAN, pattern,
                  kind == SA_KIND_MEMBER ? SA_KEY_MEMBERS : NULL);

    while (rc == SA_EXIT_OK && (r = sa_scan_next(&sc, sa, &rc)) != NULL) {
        rc = sa_resign_batch(sa, rs, kind, r->element[1]);
        freeReplyObject(r);

        sa_resign_progress(rs);
    }

    return rc;
}


/* the run's one audit entry, also when it stopped: SA_EXIT_OK or why not */
static int
sa_resign_audit(sa_admin_t *sa, sa_resign_t *rs)
{
    sa_args_t  args;

    sa_change_args(sa, &args);
    sa_args_add(&args, rs->team ? rs->team : "*");
    sa_args_addf(&args, "tokens=%zu accounts=%zu teams=%zu members=%zu "
                 "apps=%zu personal_tokens=%zu refused=%zu",
                 rs->resigned[SA_KIND_TOKEN],
                 rs->resigned[SA_KIND_ACCOUNT], rs->resigned[SA_KIND_TEAM],
                 rs->resigned[SA_KIND_MEMBER], rs->resigned[SA_KIND_APP],
                 rs->resigned[SA_KIND_PTOKEN], rs->refused);
    sa_xscript_append(sa, &sa_lua_key_resign_done, 0, &args);
    sa_args_free(&args);

    return sa_change_reply(sa);
}


static void
sa_resign_report(sa_admin_t *sa, sa_resign_t *rs, double secs)
{
    if (sa->json) {
        sa_print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                                " s:I, s:I, s:I, s:b, s:f}",
                      "tokens", (json_int_t) rs->resigned[SA_KIND_TOKEN],
                      "accounts", (json_int_t) rs->resigned[SA_KIND_ACCOUNT],
                      "teams", (json_int_t) rs->resigned[SA_KIND_TEAM],
                      "members", (json_int_t) rs->resigned[SA_KIND_MEMBER],
                      "apps", (json_int_t) rs->resigned[SA_KIND_APP],
                      "personal_tokens",
                      (json_int_t) rs->resigned[SA_KIND_PTOKEN],
                      "unsigned_teams", (json_int_t) rs->legacy,
                      "current", (json_int_t) rs->current,
                      "refused", (json_int_t) rs->refused,
                      "gone", (json_int_t) rs->gone,
                      "audit_checkpoints", (json_int_t) rs->checkpoints,
                      "dry_run", rs->dry_run,
                      "seconds", (double) (long) (secs * 1000) / 1000));
        return;
    }

    printf("%s %zu token record%s and %zu account record%s (and %zu team, "
           "%zu member, %zu application, %zu personal token records); "
           "%zu already "
           "signed with the current key; %zu refused%s (%.1f s)\n",
           rs->dry_run ? "would re-sign" : "re-signed",
           rs->resigned[SA_KIND_TOKEN],
           rs->resigned[SA_KIND_TOKEN] == 1 ? "" : "s",
           rs->resigned[SA_KIND_ACCOUNT],
           rs->resigned[SA_KIND_ACCOUNT] == 1 ? "" : "s",
           rs->resigned[SA_KIND_TEAM], rs->resigned[SA_KIND_MEMBER],
           rs->resigned[SA_KIND_APP], rs->resigned[SA_KIND_PTOKEN],
           rs->current, rs->refused,
           rs->gone ? "; some were deleted or expired meanwhile" : "",
           secs);

    if (rs->checkpoints || rs->checkpoints_refused) {
        printf("re-signed %zu audit checkpoint%s", rs->checkpoints,
               rs->checkpoints == 1 ? "" : "s");
        if (rs->checkpoints_refused) {
            printf("; %zu verify with none of the keys (left for 'audit "
                   "--verify' to report)", rs->checkpoints_refused);
        }
        printf("\n");
    }
}


/*
 * The SCANs found no record at all: fine for an empty store, but with
 * teams there, something hid the records from the pattern (a prefix not
 * the gateways', a pattern gone wrong), and an operator who went on to
 * drop the old verify key would have every token refused.
 */
static void
sa_resign_none_or_exit(sa_admin_t *sa, sa_resign_t *rs)
{
    redisReply  *r;
    long long    teams;

    r = sa_xredis_cmd(sa, "SCARD %s" SA_KEY_TEAMS, sa->prefix);
    teams = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);

    if (teams > 0 || rs->team != NULL) {
        sa_die(SA_EXIT_NOT_FOUND, "key resign found no record under prefix "
               "'%s' although %lld team%s exist%s: nothing was re-signed; do "
               "not remove the old verify key", sa->prefix,
               rs->team ? 1 : teams, (rs->team ? 1 : teams) == 1 ? "" : "s",
               (rs->team ? 1 : teams) == 1 ? "s" : "");
    }
}


static void
sa_resign_old_key_or_exit(sa_admin_t *sa, sa_resign_t *rs, const char *path)
{
    char  err[600];

    if (rs->nold == SA_RESIGN_OLD_MAX) {
        sa_die_usage(sa, "at most %d --old-verify-key", SA_RESIGN_OLD_MAX);
    }

    if (sa_key_load(path, SA_KEY_VERIFY, rs->pk[1 + rs->nold], err,
                    sizeof(err)) != 0)
    {
        sa_die_usage(sa, "--old-verify-key %s", err);
    }

    rs->nold++;
}


void
sa_key_resign_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPT_MANY("old-verify-key", 'k'),
        { "team", required_argument, NULL, 't' },
        { "dry-run", no_argument, NULL, 'n' },
        SA_OPTS_END
    };
    static sa_resign_t  rs;
    redisReply         *r;
    double              secs;
    int                 ch, rc, exists, i;

    memset(&rs, 0, sizeof(rs));

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 'k':
            sa_resign_old_key_or_exit(sa, &rs, optarg);
            break;
        case 't':
            rs.team = optarg;
            break;
        case 'n':
            rs.dry_run = 1;
            break;
        }
    }

    sa_operands_or_exit(sa, argc, argv, 0);

    if (rs.nold == 0) {
        sa_die_usage(sa, "--old-verify-key FILE is required: the verify key "
                     "of the signing key being retired");
    }

    if (rs.team != NULL && !sa_name_valid(rs.team)) {
        sa_die_usage(sa, "invalid team name '%s'", rs.team);
    }

    if (!rs.dry_run) {
        sa_actor_or_exit(sa);
    }
    rs.sk = sa_signing_key_or_exit(sa);
    memcpy(rs.pk[0], rs.sk + 32, SA_PUBLICKEY_LEN);

    if (rs.team != NULL) {
        r = sa_xredis_cmd(sa, "EXISTS %s" SA_KEY_TEAM "%s", sa->prefix,
                          rs.team);
        exists = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (!exists) {
            sa_die(SA_EXIT_NOT_FOUND, "no team '%s'", rs.team);
        }
        rs.needle_len = snprintf(rs.needle, sizeof(rs.needle),
                                 "\"team\":\"%s\"", rs.team);
    }

    sa_progress_start(&rs.progress);

    rc = SA_EXIT_OK;
    for (i = 0; i < SA_RS_KINDS && rc == SA_EXIT_OK; i++) {
        rc = sa_resign_scan(sa, &rs, sa_rs_order[i]);
    }

    if (rc == SA_EXIT_OK && rs.read + rs.legacy == 0) {
        sa_resign_none_or_exit(sa, &rs);
    }

    /* the audit log's checkpoints too (audit.h): its verify key changes */
    if (rc == SA_EXIT_OK && !rs.dry_run) {
        rs.checkpoints = sa_audit_resign(sa, rs.sk,
                                         (const uint8_t (*)[SA_PUBLICKEY_LEN])
                                         rs.pk[1], rs.nold,
                                         &rs.checkpoints_refused);
    }

    if (!rs.dry_run && sa_resign_total(&rs) + rs.refused > 0) {
        if (sa_resign_audit(sa, &rs) != SA_EXIT_OK && rc == SA_EXIT_OK) {
            rc = SA_EXIT_UNAVAILABLE;
        }
    }

    secs = sa_progress_elapsed(&rs.progress);

    if (rc != SA_EXIT_OK) {
        sa_die(rc, "key resign stopped after %zu records re-signed; run it "
               "again to finish", sa_resign_total(&rs));
    }

    sa_resign_report(sa, &rs, secs);

    if (rs.refused > 0) {
        sa_die(SA_EXIT_NOT_FOUND, "%zu record%s refused (above) and not "
               "re-signed: gateways refuse %s once the old verify key is "
               "removed", rs.refused, rs.refused == 1 ? " was" : "s were",
               rs.refused == 1 ? "it" : "them");
    }
}
