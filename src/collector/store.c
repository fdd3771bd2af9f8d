/*
 * store.c: the store's operations (see store.h for the design).
 *
 * Functions named *_work run on the threadpool and touch only their job and,
 * for store operations, the store's private aggregate (_merger, _files,
 * _counter, _needs_load): the serial queue guarantees that one operation at
 * a time does, with uv_queue_work's hand-off ordering the memory. The loop
 * side (queue, cache, counters) is touched only by the loop thread. Workers
 * do not log: they leave lines in op->log for after_work to write.
 */
#include "collector/store.h"

#include "collector/disk.h"
#include "collector/log.h"
#include "collector/metrics.h"
#include "collector/query.h"
#include "collector/retention.h"
#include "collector/spares.h"
#include "collector/upload.h"
#include "collector/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef enum op_kind { OP_LOAD, OP_COMMIT, OP_MERGE, OP_COMBINE, OP_QUERY, OP_EXPIRE } op_kind;

/* Most commits one group commit takes from the queue (one directory fsync
 * for all of them). Bounds the time the aggregate is held by one batch. */
#define STORE_BATCH_MAX 256

/* Merged profiles kept for the next decodes (spares.h): as many as a 2-CPU
 * machine's default pool decodes at once (on a larger pool the decodes
 * past these start fresh), each holding at most 2 MiB of tables (the 19 KB
 * gzip submit profile of the benchmarks holds 0.26 MiB). At most 16 MiB
 * stay held once the load ends. */
#define STORE_SPARES 8
#define STORE_SPARE_MAX_BYTES (2u << 20)

typedef struct store_op {
    uv_work_t work;
    store *st;
    op_kind kind;
    struct store_op *next;
    /* Group commit: the commits run with this one, in queue order. The
     * first op of a batch carries the batch's log, stats and reloaded. */
    struct store_op *batch;
    void *arg;
    store_submit_cb submit_cb;
    store_merge_cb merge_cb;

    /* commit input: owned */
    pprof_profile *profile;
    char *tmp_path;
    uint64_t tmp_size;
    /* When each of the submission's stages began (monotonic seconds,
     * indexed by STAGE_*, metrics.h), written by the thread that ran the
     * stage before it. */
    double t_stage[STAGE__COUNT];
    int placed; /* renamed into place, waiting for the directory fsync */
    char placed_name[DISK_NAME_MAX]; /* its name in the directory, once placed */

    /* merge/combine input: a reference to the cached blob, or NULL */
    store_blob *cached;
    /* query (merge with options, query.h): owned */
    query_job *query;

    /* results */
    int status;
    char reason[640];
    int reject;
    store_blob *blob;
    double seconds;
    uint64_t nfiles, nbytes;
    uint64_t quarantined;
    int combined;
    int reloaded; /* the aggregate was rebuilt: cached is stale */
    char *log; /* lines for the log, each "<level char><text>\n" */
    size_t log_len;
} store_op;

typedef struct submit_job {
    uv_work_t work;
    store *st;
    int fd;
    char *path;
    int created; /* path exists (else the job creates it) */
    char *buf;   /* owned: body bytes that follow the file's contents */
    size_t buf_len;
    void *arg;
    store_submit_cb cb;
    pprof_profile *profile;
    uint64_t size;
    int status;
    int reject;
    char reason[640];
    double t_stage[STAGE__COUNT]; /* the first three: see store_op.t_stage */
} submit_job;

struct store {
    uv_loop_t *loop;
    char *dir;
    pprof_limits lim;

    /* loop thread */
    store_op *head, *tail; /* queued, not running */
    store_op *running;
    unsigned validating; /* submit jobs on the pool */
    store_blob *cache;
    void (*idle_cb)(void *);
    void *idle_arg;
    query_cache qcache;     /* answers of merges with options */
    uint64_t retention_ms;  /* PGOF_RETENTION; 0 = off */
    retention *retention;   /* its timer, once started */
    int expire_queued;
    int stopped;

    /* the running operation only */
    pprof_merger *_merger;
    pprof_encoder *_encoder; /* re-deflates only what changed since the last merge */
    disk_file *_files;
    size_t _nfiles, _cap;
    uint64_t _nbytes; /* the sum of _files[].size, kept as they change */
    uint64_t _counter;
    int _needs_load;
    char _load_error[512]; /* why the last load failed; "" once one succeeds */
    query_worker *_qworker; /* per-file weight totals */

    spares *spares; /* any thread */
};

static int crash_step;

static void crash_hook(int step) {
    if (step == crash_step)
        raise(SIGKILL);
}

void store_set_crash_step(int step) {
    crash_step = step;
    disk__combine_hook = step > 0 ? crash_hook : NULL;
}

static double mono_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- blobs ------------------------------------------------------------- */

static store_blob *blob_ref(store_blob *b) {
    if (b != NULL)
        b->refs++;
    return b;
}

void store_blob_unref(void *p) {
    store_blob *b = p;
    if (b == NULL)
        return;
    assert(b->refs > 0);
    if (--b->refs == 0) {
        free(b->data);
        free(b);
    }
}

/* ---- worker helpers ------------------------------------------------------ */

static void __attribute__((format(printf, 3, 4))) op_log(store_op *op, char level,
                                                           const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + 1, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 3)
        n = (int)sizeof line - 3;
    line[0] = level;
    line[n + 1] = '\n';
    op->log = xrealloc(op->log, op->log_len + (size_t)n + 3);
    memcpy(op->log + op->log_len, line, (size_t)n + 2);
    op->log_len += (size_t)n + 2;
    op->log[op->log_len] = '\0';
}

static void files_push(store *st, const char *name, uint64_t size) {
    if (st->_nfiles == st->_cap) {
        st->_cap = st->_cap ? st->_cap * 2 : 16;
        st->_files = xrealloc(st->_files, st->_cap * sizeof *st->_files);
    }
    snprintf(st->_files[st->_nfiles].name, DISK_NAME_MAX, "%s", name);
    st->_files[st->_nfiles].size = size;
    st->_nfiles++;
    st->_nbytes += size;
}

static void files_clear(store *st) {
    st->_nfiles = 0;
    st->_nbytes = 0;
}

/* Every operation reports these: a sum kept as files come and go, not a
 * pass over all of them (a long retention holds many). */
static void stats(store *st, store_op *op) {
    op->nfiles = st->_nfiles;
    op->nbytes = st->_nbytes;
}

/*
 * The limits for files already in the directory. PGOF_MAX_PROFILE_BYTES and
 * PGOF_MAX_PROFILE_MEMORY (st->lim) bound one submission; a combine's
 * merged file holds the whole aggregate, which is bigger, and every stored
 * file was acknowledged. Read with st->lim, a merged file would be
 * quarantined at the next start-up (and skipped by since/weight merges):
 * every profile in it lost. The aggregate it came from was in memory, so
 * reading it back needs no tighter bound. 2^62, not UINT64_MAX, keeps the
 * decoder's arithmetic on these from overflowing.
 */
static const pprof_limits stored_lim = {(uint64_t)1 << 62, (uint64_t)1 << 62};

/* Worker: decodes dir/name into a profile that passes the CPU check. */
static int decode_file(store *st, const char *name, pprof_profile **out, pprof_error *perr) {
    return mergeopts_decode_file(st->dir, name, &stored_lim, 1, spares_take(st->spares), out,
                                 perr);
}

/* Worker: (re)builds the aggregate from the directory. */
static void load_work(store *st, store_op *op) {
    char err[512];
    int rc;
    /* pprof_merger_free does not accept NULL (unlike pprof_profile_free). */
    if (st->_merger != NULL)
        pprof_merger_free(st->_merger);
    st->_merger = pprof_merger_new();
    free(st->_files);
    st->_files = NULL;
    st->_cap = 0;
    files_clear(st);
    if (st->_merger == NULL) {
        snprintf(st->_load_error, sizeof st->_load_error, "out of memory creating the aggregate");
        op_log(op, 'E', "store: %s", st->_load_error);
        st->_needs_load = 1;
        return;
    }
    /* No temporary-file sweep here: main() sweeps once before the listener
     * opens. A load runs while uploads stream in (at start-up, and again
     * after a failed commit), and sweeping then would delete their files
     * under them (their commit would fail with ENOENT). */
    rc = disk_replay_journal(st->dir, err, sizeof err);
    if (rc != 0)
        op_log(op, rc > 0 ? 'I' : 'E', "store: %s", err);
    disk_file *files = NULL;
    size_t n = 0;
    if (rc == DISK_EUNSAFE ||
        disk_list_profiles(st->dir, &files, &n, err, sizeof err) != 0) {
        /* Loading now could count a profile twice or miss some: serve no
         * merge (503) until a later operation's load succeeds. */
        snprintf(st->_load_error, sizeof st->_load_error, "%s", err);
        if (rc != DISK_EUNSAFE)
            op_log(op, 'E', "store: %s", err);
        st->_needs_load = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pprof_profile *p = NULL;
        pprof_error perr = {0};
        int adding = 0;
        rc = decode_file(st, files[i].name, &p, &perr);
        if (rc == 0) {
            adding = 1;
            rc = pprof_merger_add(st->_merger, p, &perr);
            spares_give(st->spares, p);
        }
        if (rc == 0) {
            files_push(st, files[i].name, files[i].size);
            continue;
        }
        /* The aggregate's own table limit is not the file's fault either. */
        if (rc == PPROF_ENOMEM || rc == PPROF_EIO || (adding && rc == PPROF_ELIMIT)) {
            /* Not the file's fault: leave it, it will be read next time. */
            op_log(op, 'E', "store: skipped %s: %s", files[i].name, perr.msg);
            continue;
        }
        if (disk_quarantine(st->dir, files[i].name, err, sizeof err) == 0) {
            op->quarantined++;
            op_log(op, 'W', "store: quarantined %s: %s", files[i].name, perr.msg);
        } else {
            op_log(op, 'E', "store: %s does not decode (%s) and cannot be quarantined: %s",
                   files[i].name, perr.msg, err);
        }
    }
    free(files);
    st->_needs_load = 0;
    st->_load_error[0] = '\0';
    op_log(op, 'I', "store: loaded %zu profile(s) from %s (%llu distinct samples)", st->_nfiles,
           st->dir, (unsigned long long)pprof_merger_samples(st->_merger));
}

/* Worker: adds op's profile to the aggregate and renames its file into
 * place; the directory fsync that makes it durable is the batch's. */
static void commit_one(store *st, store_op *op, store_op *first) {
    pprof_error perr = {0};
    char name[DISK_NAME_MAX], err[512];
    int rc = pprof_merger_add(st->_merger, op->profile, &perr);
    spares_give(st->spares, op->profile);
    op->profile = NULL;
    if (rc != 0) {
        /* Out of memory, or the aggregate's tables are full: ours, not the
         * client's profile, which decoded and validated. */
        op->status = rc == PPROF_ENOMEM || rc == PPROF_ELIMIT ? 503 : 400;
        op->reject = REJECT_ENGINE_BASE - rc;
        snprintf(op->reason, sizeof op->reason, "%s", perr.msg);
        unlink(op->tmp_path);
        return;
    }
    rc = disk_place(st->dir, op->tmp_path, "", &st->_counter, name, err, sizeof err);
    if (rc != 0) {
        /* The merger now holds a profile the directory may not: rebuild
         * the aggregate from the directory before the next answer. */
        st->_needs_load = 1;
        op->status = util_storage_status(rc);
        op->reject = REJECT_STORAGE;
        snprintf(op->reason, sizeof op->reason, "cannot store the profile: %s", err);
        op_log(first, 'E', "store: %s", err);
        unlink(op->tmp_path);
        return;
    }
    files_push(st, name, op->tmp_size);
    op->placed = 1;
    snprintf(op->placed_name, sizeof op->placed_name, "%s", name);
    op_log(first, 'D', "store: stored %s (%llu bytes)", name, (unsigned long long)op->tmp_size);
}

/*
 * Worker: group commit. Every submission in the batch is added and renamed
 * into place, then one directory fsync makes all the renames durable before
 * any of them is answered 204 (each file's data was fsync'd by its submit
 * job). Under load this turns N directory fsyncs and N pool round trips into
 * one each.
 */
static void commit_batch(store *st, store_op *first) {
    size_t placed = 0;
    for (store_op *op = first; op != NULL; op = op->batch) {
        commit_one(st, op, first);
        placed += op->placed;
    }
    if (placed == 0)
        return;
    int rc = disk_fsync_dir(st->dir);
    if (rc != 0) {
        /* The files are in place but maybe not durably. Their clients get
         * an error and will likely retry, so take the files back out: left
         * in place, the reload below would count each of them, and the
         * retry again. Then trust only the directory. */
        st->_needs_load = 1;
        op_log(first, 'E', "store: cannot fsync %s: %s", st->dir, uv_strerror(rc));
        for (store_op *op = first; op != NULL; op = op->batch) {
            char path[PATH_MAX];
            if (!op->placed)
                continue;
            snprintf(path, sizeof path, "%s/%s", st->dir, op->placed_name);
            if (unlink(path) != 0)
                op_log(first, 'E', "store: cannot remove %s after the failed fsync: %s", path,
                       strerror(errno));
        }
    }
    for (store_op *op = first; op != NULL; op = op->batch) {
        if (!op->placed)
            continue;
        if (rc == 0) {
            op->status = 204;
        } else {
            op->status = util_storage_status(rc);
            op->reject = REJECT_STORAGE;
            snprintf(op->reason, sizeof op->reason, "cannot store the profile: cannot fsync %s: %s",
                     st->dir, uv_strerror(rc));
        }
    }
}

static int encode(store *st, store_op *op) {
    pprof_error perr = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    if (op->cached != NULL && !op->reloaded)
        return 0;
    /* Without an encoder (out of memory) the merge is only slower. */
    if (st->_encoder == NULL)
        st->_encoder = pprof_encoder_new();
    int rc = st->_encoder != NULL ? pprof_encoder_encode(st->_encoder, st->_merger, &data, &len, &perr)
                                  : pprof_merger_encode(st->_merger, &data, &len, &perr);
    if (rc != 0) {
        op->status = rc == PPROF_ENOMEM ? 503 : 500;
        snprintf(op->reason, sizeof op->reason, "cannot encode the merged profile: %s",
                 perr.msg);
        op_log(op, 'E', "store: %s", op->reason);
        return rc;
    }
    op->blob = xcalloc(1, sizeof *op->blob);
    op->blob->refs = 1;
    op->blob->data = data;
    op->blob->len = len;
    return 0;
}

static void merge_work(store *st, store_op *op) {
    double t0 = mono_seconds();
    if (st->_load_error[0] != '\0') {
        op->status = 503;
        snprintf(op->reason, sizeof op->reason, "the store is not available: %s",
                 st->_load_error);
        return;
    }
    if (pprof_merger_profiles(st->_merger) == 0) {
        op->status = 404;
        snprintf(op->reason, sizeof op->reason, "no profiles stored yet");
        return;
    }
    if (encode(st, op) != 0)
        return;
    op->status = 200;
    if (op->kind == OP_COMBINE && st->_nfiles > 1) {
        const store_blob *b = op->blob ? op->blob : op->cached;
        char name[DISK_NAME_MAX], err[512];
        int committed = 0;
        int rc = disk_combine(st->dir, b->data, b->len, st->_files, st->_nfiles, &st->_counter,
                              name, &committed, err, sizeof err);
        if (rc != 0 && !committed) {
            /* Nothing changed on disk; the merge itself is still good. */
            op_log(op, 'E', "store: combine failed, stored files kept: %s", err);
        } else {
            if (rc != 0) {
                /* Committed, but cleaning up failed: finish it the way a
                 * restart would, then trust the directory again. */
                op_log(op, 'E', "store: combine committed but: %s; replaying its journal", err);
                char msg[512];
                if (disk_replay_journal(st->dir, msg, sizeof msg) == DISK_EUNSAFE) {
                    /* The answer below is right (it is the aggregate), but
                     * the directory holds an input twice: no reload may
                     * count it until the journal can be replayed. */
                    op_log(op, 'E', "store: %s", msg);
                    st->_needs_load = 1;
                } else {
                    op_log(op, 'I', "store: %s", msg);
                }
            }
            op_log(op, 'I', "store: combined %zu profile file(s) into %s", st->_nfiles, name);
            files_clear(st);
            files_push(st, name, b->len);
            op->combined = 1;
        }
    }
    op->seconds = mono_seconds() - t0;
}

/* Worker: a merge with options (query.h), against the files and aggregate. */
static void query_op_work(store *st, store_op *op) {
    double t0 = mono_seconds();
    query_job *j = op->query;
    query_work(st->_qworker, j, st->dir, &stored_lim, st->_merger, st->_files, st->_nfiles,
               util_now_ms());
    op->status = j->status;
    snprintf(op->reason, sizeof op->reason, "%s", j->reason);
    if (j->status == 200 && j->data != NULL) {
        op->blob = xcalloc(1, sizeof *op->blob);
        op->blob->refs = 1;
        op->blob->data = j->data;
        op->blob->len = j->len;
        j->data = NULL;
    }
    if (j->status >= 500)
        op_log(op, 'E', "store: %s", j->reason);
    op->seconds = mono_seconds() - t0;
}

/* Worker: PGOF_RETENTION. Removes expired files, then rebuilds the
 * aggregate from what is left. */
static void expire_work(store *st, store_op *op) {
    char err[512], d[32];
    size_t removed = 0;
    uint64_t now = util_now_ms();
    if (now <= st->retention_ms)
        return;
    int rc = retention_expire(st->dir, st->_files, st->_nfiles, now - st->retention_ms, &removed,
                              err, sizeof err);
    if (rc != 0)
        op_log(op, 'E', "retention: %s", err);
    if (removed == 0)
        return;
    mergeopts_format_duration(st->retention_ms, d, sizeof d);
    op_log(op, 'I', "retention: removed %zu profile(s) stored more than %s ago", removed, d);
    load_work(st, op);
    op->reloaded = 1;
}

/* Runs on the threadpool: one store operation. */
static void op_work(uv_work_t *w) {
    store_op *op = container_of(w, store_op, work);
    store *st = op->st;
    util_pool_thread_init();
    if (st->_needs_load || op->kind == OP_LOAD) {
        load_work(st, op);
        op->reloaded = 1;
    }
    if (op->kind == OP_COMMIT) {
        if (st->_merger == NULL) {
            for (store_op *o = op; o != NULL; o = o->batch) {
                o->status = 503;
                snprintf(o->reason, sizeof o->reason, "the store is not available");
                unlink(o->tmp_path);
            }
        } else {
            double t = mono_seconds();
            for (store_op *o = op; o != NULL; o = o->batch)
                o->t_stage[STAGE_COMMIT] = t;
            commit_batch(st, op);
            t = mono_seconds();
            for (store_op *o = op; o != NULL; o = o->batch)
                o->t_stage[STAGE_REPLY] = t;
        }
    } else if (op->kind == OP_MERGE || op->kind == OP_COMBINE) {
        if (st->_merger == NULL) {
            op->status = 503;
            snprintf(op->reason, sizeof op->reason, "the store is not available");
        } else {
            merge_work(st, op);
        }
    } else if (op->kind == OP_QUERY) {
        if (st->_merger == NULL) {
            op->status = 503;
            snprintf(op->reason, sizeof op->reason, "the store is not available");
        } else {
            query_op_work(st, op);
        }
    } else if (op->kind == OP_EXPIRE && st->_merger != NULL) {
        expire_work(st, op);
    }
    stats(st, op);
}

/* Loop: answers a merge, plain or with options, and counts it. The caller
 * has put a newly encoded op->blob in its cache already. */
static void merge_answer(store_op *op) {
    if (op->status == 200) {
        store_blob *b = op->blob != NULL ? op->blob : blob_ref(op->cached);
        g_metrics.merges++;
        g_metrics.merge_seconds_sum += op->seconds;
        if (op->combined)
            g_metrics.combines++;
        op->merge_cb(op->arg, 200, NULL, b);
    } else {
        if (op->status != 404)
            g_metrics.merge_errors++;
        store_blob_unref(op->blob);
        op->merge_cb(op->arg, op->status, op->reason, NULL);
    }
    store_blob_unref(op->cached);
}

/* Loop: answers a merge with options and caches its answer. */
static void query_answer(store *st, store_op *op) {
    if (op->status == 200 && op->blob != NULL)
        query_cache_put(&st->qcache, &op->query->opts, op->query->key, op->blob);
    merge_answer(op);
    free(op->query->data);
    free(op->query);
}

static void run_next(store *st);

static void flush_log(store_op *op) {
    if (op->log == NULL)
        return;
    for (char *line = op->log; *line != '\0';) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        int lvl = line[0] == 'E' ? LOG_ERROR
                  : line[0] == 'W' ? LOG_WARN
                  : line[0] == 'I' ? LOG_INFO
                                   : LOG_DEBUG;
        LOG(lvl, "%s", line + 1);
        line = nl + 1;
    }
    free(op->log);
    op->log = NULL;
}

/* Loop: counts and answers one commit of a batch. */
static void commit_answer(store_op *op) {
    if (op->status == 204) {
        g_metrics.profiles_accepted++;
        metrics_count_stages(op->t_stage, mono_seconds());
    } else
        metrics_count_reject(op->reject);
    op->submit_cb(op->arg, op->status, op->reason);
}

static void op_after(uv_work_t *w, int status) {
    store_op *op = container_of(w, store_op, work);
    store *st = op->st;
    st->running = NULL;
    if (status == UV_ECANCELED) {
        for (store_op *o = op; o != NULL; o = o->batch) {
            o->status = 503;
            snprintf(o->reason, sizeof o->reason, "shutting down");
            if (o->tmp_path)
                unlink(o->tmp_path); /* the loop is ending; a blocking unlink is fine */
        }
    }
    flush_log(op);
    if (op->reloaded) {
        store_blob_unref(st->cache);
        st->cache = NULL;
    }
    g_metrics.stored_profiles = op->nfiles;
    g_metrics.stored_bytes = op->nbytes;
    g_metrics.quarantined += op->quarantined;
    switch (op->kind) {
    case OP_LOAD:
        g_metrics.store_ready = 1;
        break;
    case OP_COMMIT:
        /* If the aggregate changed the cached encoding is stale: drop it
         * before any answer can lead to a merge request. */
        for (store_op *o = op; o != NULL; o = o->batch) {
            if (o->status == 204) {
                store_blob_unref(st->cache);
                st->cache = NULL;
                break;
            }
        }
        /* A profile is still here when its add never ran (cancelled, or
         * the store could not load): freed with its answer, on every path. */
        for (store_op *o = op->batch; o != NULL;) {
            store_op *next = o->batch;
            commit_answer(o);
            pprof_profile_free(o->profile);
            free(o->tmp_path);
            free(o);
            o = next;
        }
        commit_answer(op);
        pprof_profile_free(op->profile);
        op->profile = NULL;
        break;
    case OP_MERGE:
    case OP_COMBINE:
        if (op->status == 200 && op->blob != NULL) {
            store_blob_unref(st->cache);
            st->cache = blob_ref(op->blob);
        }
        merge_answer(op);
        break;
    case OP_QUERY:
        query_answer(st, op);
        break;
    case OP_EXPIRE:
        st->expire_queued = 0;
        break;
    }
    free(op->tmp_path);
    free(op);
    run_next(st);
}

static void run_next(store *st) {
    while (st->running == NULL && st->head != NULL) {
        store_op *op = st->head;
        st->head = op->next;
        if (st->head == NULL)
            st->tail = NULL;
        st->running = op;
        /* Every operation ahead has finished, so the cache (if any) is the
         * encoding of the aggregate this one will see. */
        if ((op->kind == OP_MERGE || op->kind == OP_COMBINE) && st->cache != NULL)
            op->cached = blob_ref(st->cache);
        /* Group commit: take the commits queued right behind this one. */
        if (op->kind == OP_COMMIT) {
            store_op *last = op;
            for (int n = 1; n < STORE_BATCH_MAX && st->head != NULL && st->head->kind == OP_COMMIT;
                 n++) {
                last->batch = st->head;
                last = st->head;
                st->head = st->head->next;
            }
            if (st->head == NULL)
                st->tail = NULL;
        }
        if (uv_queue_work(st->loop, &op->work, op_work, op_after) != 0) {
            st->running = NULL;
            op_after(&op->work, UV_ECANCELED);
            return;
        }
    }
    if (!store_busy(st) && st->idle_cb != NULL)
        st->idle_cb(st->idle_arg);
}

static void enqueue(store *st, store_op *op) {
    op->st = st;
    op->next = NULL;
    if (st->tail)
        st->tail->next = op;
    else
        st->head = op;
    st->tail = op;
    run_next(st);
}

/* ---- submissions ----------------------------------------------------------- */

/*
 * Runs on the threadpool: create the temporary file if the upload did not,
 * write the bytes the upload buffered, then validate the upload and make it
 * durable. For a body that fit the upload's buffer this one job is the
 * submission's only threadpool round trip before its commit.
 */
static void submit_job_run(submit_job *j) {
    pprof_error perr = {0};
    unsigned char magic[2] = {0, 0};
    char err[256];
    int rc;
    /* A file the job creates holds exactly the buffered bytes: a gzip body
     * is decoded from them instead of read back. (A raw one is read back:
     * from a descriptor it is charged the read window, as when it streams.) */
    int whole = !j->created, gzip, from_mem;
    util_pool_thread_init();
    if (!j->created) {
        j->fd = open(j->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (j->fd < 0) {
            rc = -errno;
            snprintf(err, sizeof err, "%s", uv_strerror(rc));
            j->status = util_storage_status(rc);
            j->reject = REJECT_STORAGE;
            snprintf(j->reason, sizeof j->reason, "cannot store the upload: %s", err);
            return;
        }
        j->created = 1;
    }
    if (j->buf_len > 0) {
        rc = disk_write_all(j->fd, j->buf, j->buf_len);
        if (rc != 0) {
            snprintf(err, sizeof err, "%s", uv_strerror(rc));
            j->status = util_storage_status(rc);
            j->reject = REJECT_STORAGE;
            snprintf(j->reason, sizeof j->reason, "cannot store the upload: %s", err);
            return;
        }
    }
    if (whole) {
        if (j->buf_len >= 2)
            memcpy(magic, j->buf, 2);
    } else if (pread(j->fd, magic, 2, 0) < 0) {
        goto fail_read;
    }
    /* A gzip upload is stored as it is: let the disk write it while we
     * decode. (A raw one is rewritten as gzip below.) */
    gzip = magic[0] == 0x1f && magic[1] == 0x8b;
    if (gzip)
        disk_start_write_out(j->fd);
    from_mem = whole && gzip;
    if (from_mem) {
        rc = mergeopts_decode_mem(j->buf, j->buf_len, &j->st->lim, 1, spares_take(j->st->spares),
                                  &j->profile, &perr);
    } else if (lseek(j->fd, 0, SEEK_SET) < 0) {
        goto fail_read;
    } else {
        rc = mergeopts_decode_fd(j->fd, &j->st->lim, 1, spares_take(j->st->spares),
                                 &j->profile, &perr);
    }
    free(j->buf); /* written, and decoded if from_mem; returns above leave it to submit_after */
    j->buf = NULL;
    if (rc != 0) {
        j->reject = REJECT_ENGINE_BASE - rc;
        j->status = (rc == PPROF_ETOOBIG || rc == PPROF_ELIMIT) ? 413
                    : rc == PPROF_ENOMEM                        ? 503
                    : rc == PPROF_EIO                           ? 500
                                                                : 400;
        snprintf(j->reason, sizeof j->reason, "%s", perr.msg);
        return;
    }
    if (!gzip) {
        /* Raw protobuf: stored files are gzip, as the Go collector's. */
        size_t pl = strlen(j->path);
        char *gz = xmalloc(pl + 4);
        memcpy(gz, j->path, pl);
        memcpy(gz + pl, "-gz", 4);
        int out = open(gz, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0 || (rc = disk_gzip_fd(j->fd, out, err, sizeof err)) != 0) {
            if (out < 0) {
                rc = -errno;
                snprintf(err, sizeof err, "%s", strerror(errno));
            } else {
                close(out);
            }
            unlink(gz);
            free(gz);
            goto fail_storage;
        }
        close(j->fd);
        unlink(j->path);
        free(j->path);
        j->path = gz;
        j->fd = out;
    }
    if (fsync(j->fd) != 0) {
        rc = -errno;
        snprintf(err, sizeof err, "fsync: %s", strerror(errno));
        goto fail_storage;
    }
    if (from_mem) {
        j->size = j->buf_len; /* the job wrote exactly these bytes */
    } else {
        struct stat st;
        if (fstat(j->fd, &st) != 0) {
            rc = -errno;
            snprintf(err, sizeof err, "fstat: %s", strerror(errno));
            goto fail_storage;
        }
        j->size = (uint64_t)st.st_size;
    }
    j->status = 204;
    return;
fail_read:
    j->status = 500;
    j->reject = REJECT_STORAGE;
    snprintf(j->reason, sizeof j->reason, "cannot read the upload: %s", strerror(errno));
    return;
fail_storage:
    pprof_profile_free(j->profile);
    j->profile = NULL;
    j->status = util_storage_status(rc);
    j->reject = REJECT_STORAGE;
    snprintf(j->reason, sizeof j->reason, "cannot store the profile: %s", err);
}

/* Runs on the threadpool: the job, timed for the stage metrics. */
static void submit_work(uv_work_t *w) {
    submit_job *j = container_of(w, submit_job, work);
    j->t_stage[STAGE_VALIDATE] = mono_seconds();
    submit_job_run(j);
    j->t_stage[STAGE_COMMIT_WAIT] = mono_seconds();
}

static void submit_after(uv_work_t *w, int status) {
    submit_job *j = container_of(w, submit_job, work);
    store *st = j->st;
    st->validating--;
    if (status == UV_ECANCELED) {
        j->status = 503;
        j->reject = REJECT_STORAGE;
        snprintf(j->reason, sizeof j->reason, "shutting down");
    }
    /* Close on the loop: a close after fsync does not wait for the disk. */
    if (j->fd >= 0)
        close(j->fd);
    free(j->buf);
    if (j->status != 204) {
        metrics_count_reject(j->reject);
        if (j->created) {
            upload_discard(st->loop, -1, j->path);
        } else {
            /* Never created (or O_EXCL refused it): not ours to unlink. */
            free(j->path);
        }
        j->cb(j->arg, j->status, j->reason);
        free(j);
        if (!store_busy(st) && st->idle_cb != NULL)
            st->idle_cb(st->idle_arg);
        return;
    }
    store_op *op = xcalloc(1, sizeof *op);
    op->kind = OP_COMMIT;
    op->arg = j->arg;
    op->submit_cb = j->cb;
    op->profile = j->profile;
    op->tmp_path = j->path;
    op->tmp_size = j->size;
    memcpy(op->t_stage, j->t_stage, sizeof op->t_stage);
    free(j);
    enqueue(st, op);
}

void store_submit(store *st, int fd, char *path, int created, char *buf, size_t len, void *arg,
                  store_submit_cb cb) {
    submit_job *j = xcalloc(1, sizeof *j);
    j->st = st;
    j->fd = fd;
    j->path = path;
    j->created = created;
    j->buf = buf;
    j->buf_len = len;
    j->arg = arg;
    j->cb = cb;
    j->t_stage[STAGE_QUEUE] = mono_seconds();
    st->validating++;
    if (uv_queue_work(st->loop, &j->work, submit_work, submit_after) != 0)
        submit_after(&j->work, UV_ECANCELED);
}

void store_merge(store *st, int combine, void *arg, store_merge_cb cb) {
    if (!combine && st->cache != NULL && st->head == NULL && st->running == NULL) {
        /* Nothing queued could change the aggregate: answer from cache. */
        g_metrics.merges++;
        cb(arg, 200, NULL, blob_ref(st->cache));
        return;
    }
    store_op *op = xcalloc(1, sizeof *op);
    op->kind = combine ? OP_COMBINE : OP_MERGE;
    op->arg = arg;
    op->merge_cb = cb;
    enqueue(st, op);
}

void store_query(store *st, const mergeopts *o, void *arg, store_merge_cb cb) {
    if (!mergeopts_any(o)) {
        store_merge(st, o->combine, arg, cb);
        return;
    }
    store_op *op = xcalloc(1, sizeof *op);
    op->kind = OP_QUERY;
    op->arg = arg;
    op->merge_cb = cb;
    op->query = xcalloc(1, sizeof *op->query);
    op->query->opts = *o;
    op->cached = query_cache_get(&st->qcache, o, &op->query->cached_key);
    enqueue(st, op);
}

/* Loop: a retention tick queues one expire operation at a time. */
static void on_retention_tick(void *arg) {
    store *st = arg;
    if (st->stopped || st->expire_queued)
        return;
    store_op *op = xcalloc(1, sizeof *op);
    op->kind = OP_EXPIRE;
    st->expire_queued = 1;
    enqueue(st, op);
}

void store_set_retention(store *st, uint64_t retention_ms) {
    st->retention_ms = retention_ms;
}

void store_stop(store *st) {
    st->stopped = 1;
    retention_stop(st->retention);
    st->retention = NULL;
}

/* ---- lifetime -------------------------------------------------------------- */

store *store_new(uv_loop_t *loop, const char *dir, const pprof_limits *lim) {
    store *st = xcalloc(1, sizeof *st);
    st->loop = loop;
    st->dir = xstrdup(dir);
    st->lim = *lim;
    st->_qworker = query_worker_new();
    st->spares = spares_new(STORE_SPARES, STORE_SPARE_MAX_BYTES);
    return st;
}

void store_start(store *st) {
    store_op *op = xcalloc(1, sizeof *op);
    op->kind = OP_LOAD;
    enqueue(st, op);
    /* The first tick runs at once: queued behind the load. */
    if (st->retention_ms && !st->stopped)
        st->retention = retention_start(st->loop, st->retention_ms, on_retention_tick, st);
}

int store_busy(const store *st) {
    return st->running != NULL || st->head != NULL || st->validating > 0;
}

void store_on_idle(store *st, void (*cb)(void *), void *arg) {
    st->idle_cb = cb;
    st->idle_arg = arg;
}

void store_free(store *st) {
    if (st == NULL)
        return;
    assert(!store_busy(st));
    store_blob_unref(st->cache);
    query_cache_clear(&st->qcache);
    query_worker_free(st->_qworker);
    if (st->_merger != NULL)
        pprof_merger_free(st->_merger);
    pprof_encoder_free(st->_encoder);
    spares_free(st->spares);
    free(st->_files);
    free(st->dir);
    free(st);
}
