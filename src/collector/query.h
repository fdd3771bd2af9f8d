/*
 * query.h: the merge options of POST /v1/merge (strip_labels, shape,
 * weight, since; docs/api.md) on the collector's side: parsing the query
 * string, and answering a merge that asks for them.
 *
 * DESIGN
 * The plain merge (no option, or only and_combine) is the running
 * aggregate's and never comes here. Every other merge runs as one store
 * operation on the threadpool (store_query), so it sees the same stored
 * files and aggregate as the operations before and after it:
 *   - strip_labels and shape alone are derived from the running aggregate
 *     (pprof_merger_reshape), without reading a file;
 *   - since and weight need each profile on its own: the selected files are
 *     decoded again (mergeopts_merge), weighted, merged and reshaped. The
 *     per-file weight totals are cached (a stored file never changes under
 *     its name), so weight=equal reads each file once per merge.
 * Results are cached on the loop: up to QUERY_CACHE_SLOTS answers, each
 * keyed by its canonical query and a hash of the names of the files it
 * covered. The worker recomputes that hash for the current files (cheap:
 * names only) and reuses the cached blob when it matches, so a cached
 * answer is never stale: a new, combined, expired or quarantined file, or
 * a since window that moved past a file, changes the hash.
 *
 * Threads: query_parse and the query_cache_* functions on the loop; the
 * worker's state (query_worker) only inside store operations, which the
 * store runs one at a time.
 */
#ifndef COLLECTOR_QUERY_H
#define COLLECTOR_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "collector/disk.h"
#include "collector/store.h"
#include "common/mergeopts.h"
#include "pprof/pprof.h"

/*
 * Parses a merge request's query string (without '?', qlen bytes) into o:
 * percent-decoded values, the first of repeated keys wins (Go's
 * url.Values.Get), unknown keys are ignored, as in the Go collector. Then
 * applies the and_combine rule (mergeopts_check). Returns 0, or -1 with a
 * one-line reason in why (the request's 400).
 */
int query_parse(const char *q, size_t qlen, mergeopts *o, char *why, size_t whylen);

/* ---- worker ------------------------------------------------------------ */

typedef struct query_worker query_worker;

/* Per-file weight totals and the last answer's encoded pieces, for one
 * store operation at a time. Returns owned; free with query_worker_free
 * (either thread, once idle). */
query_worker *query_worker_new(void);
void query_worker_free(query_worker *w);

typedef struct query_job {
    /* in */
    mergeopts opts;
    uint64_t cached_key; /* key of the loop's cached answer for opts, or 0 */
    /* out */
    int status;          /* 200, 404, 500 or 503 */
    char reason[512];
    uint64_t key;        /* the answer's key (200) */
    uint8_t *data;       /* the encoded answer (owned), NULL when the cached
                            answer is still right */
    size_t len;
    size_t nfiles;       /* profiles the answer covers */
} query_job;

/*
 * Runs on the threadpool inside a store operation: answers j against the
 * stored files (names in dir) and their running aggregate. Fills j's out
 * fields; never logs.
 */
void query_work(query_worker *w, query_job *j, const char *dir, const pprof_limits *lim,
                const pprof_merger *aggregate, const disk_file *files, size_t nfiles,
                uint64_t now_ms);

/* ---- loop-side answer cache ------------------------------------------- */

#define QUERY_CACHE_SLOTS 4

typedef struct query_cache {
    struct {
        char query[128];
        uint64_t key;
        store_blob *blob; /* a reference, or NULL */
        uint64_t used;
    } slot[QUERY_CACHE_SLOTS];
    uint64_t clock;
} query_cache;

/* The cached answer of opts: a new reference to its blob and its key, or
 * NULL (and *key 0). */
store_blob *query_cache_get(query_cache *c, const mergeopts *opts, uint64_t *key);

/* Remembers blob (takes a new reference) as the answer of opts with key,
 * replacing the least recently used slot. */
void query_cache_put(query_cache *c, const mergeopts *opts, uint64_t key, store_blob *blob);

/* Drops every reference. */
void query_cache_clear(query_cache *c);

#endif /* COLLECTOR_QUERY_H */
