/*
 * store.h: the stored profiles and their running aggregate.
 *
 * DESIGN
 * The store owns the profile directory (see disk.h for its on-disk
 * protocol), a pprof_merger holding the sum of every stored profile, and the
 * list of stored files. All merger and file-list work happens in store
 * operations that run on the threadpool strictly one at a time, in arrival
 * order (the loop queues the next only from the previous one's
 * after_work_cb), so the merger needs no lock and the directory and the
 * aggregate always describe the same set of profiles. The operations:
 *
 *   load     at start-up: replay a combine journal, decode every stored
 *            file into the merger, quarantine the bad. (Temporary files are
 *            swept by main() before the listener opens, never here.)
 *   commit   add one validated submission to the merger, then rename its
 *            temporary file into place (durably). Commits queued back to
 *            back run as one group commit: every rename, then one
 *            directory fsync, then every answer.
 *   merge    encode the merger (cached until the next commit).
 *   combine  merge, then replace the stored files by the merged one.
 *   query    a merge with options (strip_labels, shape, weight, since):
 *            derived from the merger or re-read from the files (query.h).
 *   expire   PGOF_RETENTION: remove expired files, rebuild the merger
 *            (retention.h).
 *
 * Validation of a submission (decompress, decode, check) is CPU work that
 * needs no shared state, so it runs on the pool in parallel, before its
 * commit is queued. Once merged, a profile's memory goes back to the next
 * validations (spares.h), so their tables need not grow again. Requests
 * that reach the store before the load finished simply wait in the queue
 * behind it.
 *
 * Threads: store_* functions are called on the loop thread only; callbacks
 * run there too.
 */
#ifndef COLLECTOR_STORE_H
#define COLLECTOR_STORE_H

#include "common/mergeopts.h"
#include "pprof/pprof.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct store store;

/* An encoded merged profile shared by the cache and the answers that send
 * it. Reference-counted on the loop thread. */
typedef struct store_blob {
    unsigned refs;
    size_t len;
    uint8_t *data;
} store_blob;

/* Drops one reference (the signature fits conn_send's body_free). */
void store_blob_unref(void *blob);

/*
 * Called on the loop with an HTTP status (204 when stored) and, for others,
 * a one-line reason valid during the call. reject is the REJECT_* reason to
 * count, or -1.
 */
typedef void (*store_submit_cb)(void *arg, int status, const char *reason);

/*
 * Called with 200 and a blob (a new reference the callee owns), or an error
 * status and a reason.
 */
typedef void (*store_merge_cb)(void *arg, int status, const char *reason, store_blob *blob);

/* Returns owned. lim is copied. */
store *store_new(uv_loop_t *loop, const char *dir, const pprof_limits *lim);

/* Queues the start-up load. */
void store_start(store *st);

/*
 * Validates and stores the submission in the temporary file fd/path
 * followed by the len bytes of buf, then calls cb(arg, ...) once. Takes
 * ownership of fd, path and buf (which may be NULL). When created is 0 the
 * file does not exist yet (fd is -1): the submit job creates it (O_EXCL),
 * so a body that fit in the upload's buffer costs one pool round trip.
 */
void store_submit(store *st, int fd, char *path, int created, char *buf, size_t len, void *arg,
                  store_submit_cb cb);

/* Answers a merge (combine: also replace the stored files). */
void store_merge(store *st, int combine, void *arg, store_merge_cb cb);

/*
 * Answers a merge with options (strip_labels, shape, weight, since; see
 * query.h). Without any it is store_merge(o->combine). o is copied; the
 * caller has checked it with mergeopts_check.
 */
void store_query(store *st, const mergeopts *o, void *arg, store_merge_cb cb);

/* PGOF_RETENTION (0 = off): set before store_start, which starts its timer
 * (retention.h). */
void store_set_retention(store *st, uint64_t retention_ms);

/* At shutdown: stops the store's timers; queued work still runs. */
void store_stop(store *st);

/* Whether work is queued or running. */
int store_busy(const store *st);

/* Called (on the loop) whenever the store becomes idle. */
void store_on_idle(store *st, void (*cb)(void *arg), void *arg);

/* Frees the store; only when not busy. */
void store_free(store *st);

/* Test seam (PGOF_TEST_CRASH_AT_STEP): kill the process at a combine step. */
void store_set_crash_step(int step);

#endif /* COLLECTOR_STORE_H */
