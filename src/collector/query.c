/*
 * query.c: merge options on the collector (see query.h for the design).
 *
 * query_parse and the cache run on the loop thread; query_work and the
 * worker's totals table run on the threadpool inside a store operation.
 */
#include "collector/query.h"

#include "collector/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s (and '+' as space, as Go's ParseQuery) into out.
 * Returns the length, or -1 for a bad escape or a value too long. */
static int unescape(const char *s, size_t n, char *out, size_t outsz)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (o + 1 >= outsz)
            return -1;
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -1;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return (int)o;
}

int query_parse(const char *q, size_t qlen, mergeopts *o, char *why, size_t whylen)
{
    /* Which known keys were seen already: the first one wins. */
    static const char *const known[] = {"and_combine", "strip_labels", "shape", "weight",
                                        "since"};
    int seen[sizeof known / sizeof known[0]] = {0};
    size_t i = 0;

    mergeopts_init(o);
    while (i < qlen) {
        const char *seg = q + i;
        const char *amp = memchr(seg, '&', qlen - i);
        size_t sl = amp ? (size_t)(amp - seg) : qlen - i;
        const char *eq = memchr(seg, '=', sl);
        size_t kl = eq ? (size_t)(eq - seg) : sl;
        char key[32], val[64];
        int vl, k;

        i += sl + 1;
        if (unescape(seg, kl, key, sizeof key) < 0)
            continue; /* not one of ours: ignored */
        for (k = 0; k < (int)(sizeof known / sizeof known[0]); k++)
            if (strcmp(key, known[k]) == 0)
                break;
        if (k == (int)(sizeof known / sizeof known[0]) || seen[k])
            continue;
        seen[k] = 1;
        vl = eq ? unescape(eq + 1, sl - kl - 1, val, sizeof val) : 0;
        if (!eq)
            val[0] = '\0';
        if (vl < 0) {
            if (k == 0)
                continue; /* and_combine: anything but "true" is false */
            snprintf(why, whylen, "%s: the value is not valid URL encoding or is too long", key);
            return -1;
        }
        if (mergeopts_set(o, key, val, (size_t)vl, why, whylen) < 0)
            return -1;
    }
    return mergeopts_check(o, why, whylen) == 0 ? 0 : -1;
}

/* ---- worker ------------------------------------------------------------- */

/* Per-file weight totals, by name: open addressing, entry index + 1. */
typedef struct total_entry {
    char name[DISK_NAME_MAX];
    int64_t total;
} total_entry;

struct query_worker {
    total_entry *entries;
    size_t n, cap;
    uint32_t *slots;
    size_t nslots; /* power of two, or 0 */
    /* Remembers the last answer's pieces: the same options asked again after
     * a few more profiles deflate only what changed (the reshaped merger is
     * new each time, so the pieces are matched by content). */
    pprof_encoder *enc;
};

query_worker *query_worker_new(void)
{
    return xcalloc(1, sizeof(query_worker));
}

void query_worker_free(query_worker *w)
{
    if (w == NULL)
        return;
    free(w->entries);
    free(w->slots);
    pprof_encoder_free(w->enc);
    free(w);
}

static uint64_t fnv(const void *d, size_t n, uint64_t h)
{
    const unsigned char *b = d;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    return h;
}

static void totals_clear(query_worker *w)
{
    w->n = 0;
    if (w->slots)
        memset(w->slots, 0, w->nslots * sizeof *w->slots);
}

static void totals_rehash(query_worker *w)
{
    w->nslots = w->nslots ? w->nslots * 2 : 256;
    free(w->slots);
    w->slots = xcalloc(w->nslots, sizeof *w->slots);
    for (size_t i = 0; i < w->n; i++) {
        size_t j = fnv(w->entries[i].name, strlen(w->entries[i].name), 14695981039346656037ull);
        for (j &= w->nslots - 1; w->slots[j]; j = (j + 1) & (w->nslots - 1))
            ;
        w->slots[j] = (uint32_t)i + 1;
    }
}

static int on_total_get(void *ctx, const char *name, int64_t *total)
{
    query_worker *w = ctx;
    if (w->nslots == 0)
        return 0;
    size_t j = fnv(name, strlen(name), 14695981039346656037ull) & (w->nslots - 1);
    for (; w->slots[j]; j = (j + 1) & (w->nslots - 1)) {
        const total_entry *e = &w->entries[w->slots[j] - 1];
        if (strcmp(e->name, name) == 0) {
            *total = e->total;
            return 1;
        }
    }
    return 0;
}

static void on_total_put(void *ctx, const char *name, int64_t total)
{
    query_worker *w = ctx;
    if (strlen(name) >= DISK_NAME_MAX)
        return;
    if ((w->n + 1) * 2 > w->nslots)
        totals_rehash(w);
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->entries = xrealloc(w->entries, w->cap * sizeof *w->entries);
    }
    snprintf(w->entries[w->n].name, DISK_NAME_MAX, "%s", name);
    w->entries[w->n].total = total;
    w->n++;
    size_t j = fnv(name, strlen(name), 14695981039346656037ull) & (w->nslots - 1);
    for (; w->slots[j]; j = (j + 1) & (w->nslots - 1))
        ;
    w->slots[j] = (uint32_t)w->n;
}

/* The answer's key: the canonical query and the names of the files it
 * covers, selected by the same rule as mergeopts_merge. */
static uint64_t answer_key(const char *canon, const char *dir, const disk_file *files, size_t n,
                           const mergeopts *o, uint64_t now_ms, size_t *covered)
{
    uint64_t h = fnv(canon, strlen(canon) + 1, 14695981039346656037ull);
    *covered = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t t;
        if (o->since_ms && (mergeopts_file_time_ms(dir, files[i].name, &t) != 0 ||
                            t + o->since_ms < now_ms))
            continue;
        h = fnv(files[i].name, strlen(files[i].name) + 1, h);
        (*covered)++;
    }
    return h ? h : 1;
}

static void job_fail(query_job *j, int status, const char *fmt, const char *arg)
{
    j->status = status;
    snprintf(j->reason, sizeof j->reason, fmt, arg);
}

void query_work(query_worker *w, query_job *j, const char *dir, const pprof_limits *lim,
                const pprof_merger *aggregate, const disk_file *files, size_t nfiles,
                uint64_t now_ms)
{
    const mergeopts *o = &j->opts;
    pprof_merger *m = NULL;
    pprof_error perr = {0};
    char canon[128], why[MERGEOPTS_ERR_MAX + DISK_NAME_MAX];
    size_t covered;
    int rc;

    mergeopts_query(o, canon, sizeof canon);
    j->data = NULL;
    j->len = 0;
    if (nfiles == 0 || pprof_merger_profiles(aggregate) == 0) {
        job_fail(j, 404, "%s", "no profiles stored yet");
        return;
    }
    j->key = answer_key(canon, dir, files, nfiles, o, now_ms, &covered);
    if (j->cached_key != 0 && j->cached_key == j->key) {
        j->status = 200;
        j->nfiles = covered;
        return;
    }
    if (w->n > 2 * nfiles + 64)
        totals_clear(w); /* forget files that are long gone */
    if (!mergeopts_needs_files(o)) {
        rc = pprof_merger_reshape(aggregate,
                                  (o->shape == MERGEOPTS_SHAPE_PGO ? PPROF_RESHAPE_PGO : 0) |
                                      (o->strip_labels ? PPROF_RESHAPE_STRIP_LABELS : 0),
                                  &m, &perr);
        if (rc != 0) {
            job_fail(j, rc == PPROF_ENOMEM ? 503 : 500, "cannot reshape the merged profile: %s",
                 perr.msg);
            return;
        }
        j->nfiles = nfiles;
    } else {
        const char **names = xcalloc(nfiles + 1, sizeof *names);
        mergeopts_input in;
        size_t selected = 0, bad = 0;
        for (size_t i = 0; i < nfiles; i++)
            names[i] = files[i].name;
        memset(&in, 0, sizeof in);
        in.dir = dir;
        in.names = names;
        in.n = nfiles;
        in.lim = lim;
        in.cpu_only = 1;
        in.get = on_total_get;
        in.put = on_total_put;
        in.cache_ctx = w;
        rc = mergeopts_merge(o, &in, now_ms, &m, &selected, &bad, why, sizeof why);
        free(names);
        if (rc != 0) {
            job_fail(j, rc == PPROF_ENOMEM ? 503 : 500, "cannot merge the stored profiles: %s",
                     why);
            return;
        }
        if (m == NULL) {
            char d[32];
            mergeopts_format_duration(o->since_ms, d, sizeof d);
            job_fail(j, 404, "no profiles stored within the last %s", d);
            return;
        }
        j->nfiles = selected;
    }
    if (w->enc == NULL)
        w->enc = pprof_encoder_new(); /* NULL: encoded without it */
    rc = w->enc != NULL ? pprof_encoder_encode(w->enc, m, &j->data, &j->len, &perr)
                        : pprof_merger_encode(m, &j->data, &j->len, &perr);
    pprof_merger_free(m);
    if (rc != 0) {
        job_fail(j, rc == PPROF_ENOMEM ? 503 : 500, "cannot encode the merged profile: %s",
                 perr.msg);
        return;
    }
    j->status = 200;
}

/* ---- loop-side cache ---------------------------------------------------- */

store_blob *query_cache_get(query_cache *c, const mergeopts *opts, uint64_t *key)
{
    char q[128];
    mergeopts_query(opts, q, sizeof q);
    *key = 0;
    for (int i = 0; i < QUERY_CACHE_SLOTS; i++) {
        if (c->slot[i].blob != NULL && strcmp(c->slot[i].query, q) == 0) {
            c->slot[i].used = ++c->clock;
            *key = c->slot[i].key;
            c->slot[i].blob->refs++; /* loop thread, like every blob reference */
            return c->slot[i].blob;
        }
    }
    return NULL;
}

void query_cache_put(query_cache *c, const mergeopts *opts, uint64_t key, store_blob *blob)
{
    char q[128];
    int victim = 0;
    mergeopts_query(opts, q, sizeof q);
    for (int i = 0; i < QUERY_CACHE_SLOTS; i++) {
        if (c->slot[i].blob != NULL && strcmp(c->slot[i].query, q) == 0) {
            victim = i;
            break;
        }
        if (c->slot[i].used < c->slot[victim].used)
            victim = i;
    }
    store_blob_unref(c->slot[victim].blob);
    blob->refs++;
    snprintf(c->slot[victim].query, sizeof c->slot[victim].query, "%s", q);
    c->slot[victim].key = key;
    c->slot[victim].blob = blob;
    c->slot[victim].used = ++c->clock;
}

void query_cache_clear(query_cache *c)
{
    for (int i = 0; i < QUERY_CACHE_SLOTS; i++) {
        store_blob_unref(c->slot[i].blob);
        c->slot[i].blob = NULL;
    }
}
