/*
 * pgof.c: libpgof's public entry points, its background thread and its
 * fork handling.
 *
 * DESIGN
 * One mutex (G.lock) and one condition variable (G.cond, CLOCK_MONOTONIC)
 * guard all shared state; nothing slow ever runs under the lock. Both, and
 * the pthread_atfork handlers, are set up on first use by pthread_once: the
 * library has no constructor, so a process that never calls pgof_* pays
 * nothing.
 *
 * pgof_enable starts a worker thread with its own settings and endpoint
 * reference. The worker loops: wait interval (or until told to stop), take
 * the sampler token, record a window (sampler.c + profile.c), give the
 * token back, submit (endpoint.c), report any error to the error callback,
 * and wait again; so the next wait starts only after the submission ends,
 * as in the original Go client. pgof_disable only marks the current worker
 * stopped and wakes it: a worker that is waiting exits at once, one that is
 * recording finishes, submits, then exits. Workers are detached;
 * pgof_wait_idle waits for them through G.nworkers and G.jobs.
 *
 * The sampler token (G.sampler_busy) serialises the one process-wide
 * SIGPROF timer among workers (a disabled worker may still be recording
 * when a new one starts) and pgof_profile_once callers, which get
 * PGOF_EBUSY rather than waiting.
 *
 * Worker threads block every signal except SIGPROF (and synchronous
 * faults), so the host's signal handlers keep running on the host's
 * threads, as Redis' bio threads do. SIGPROF stays open so the profiler's
 * own CPU time is sampled like everyone else's.
 *
 * fork: the prepare handler takes G.lock so the child gets consistent
 * state; in the child no worker exists (threads do not survive fork), so
 * the child forgets them, restores the SIGPROF action (sampler.c) and
 * starts with nothing enabled; it may call pgof_enable itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "embedded/internal.h"

#define DRAIN_MS 20      /* how often the worker empties the ring */
#define REFRESH_MS 100   /* how often it looks for new threads */

typedef struct worker {
    pgof_endpoint *ep; /* a reference of our own */
    uint64_t interval_ms, sample_ms;
    bool stop;         /* under G.lock */
} worker;

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    worker *current;   /* the enabled worker, or NULL */
    int nworkers;      /* live worker threads, enabled or not */
    int jobs;          /* profiles being recorded or submitted */
    bool sampler_busy; /* the sampler token */
    int hz;
    pgof_error_cb err_cb;
    void *err_ctx;
} G = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER, .hz = 100};

static _Atomic int recording; /* a window is open (pgof_recording) */

/* ---- small helpers -------------------------------------------------------- */

int pgof__fail(pgof_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

int pgof_version(void)
{
    return PGOF_VERSION;
}

const char *pgof_strerror(int code)
{
    switch (code) {
    case PGOF_OK: return "ok";
    case PGOF_EINVAL: return "invalid argument";
    case PGOF_ENOMEM: return "out of memory";
    case PGOF_EBUSY: return "busy";
    case PGOF_ESYS: return "system error";
    case PGOF_ENOTSUP: return "not supported";
    case PGOF_EPROFILE: return "profile";
    case PGOF_ESUBMIT: return "submit";
    case PGOF_ETIMEDOUT: return "timed out";
    default: return "unknown error";
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timespec ms_to_ts(uint64_t ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000;
    return ts;
}

/* ---- fork and set-up ---------------------------------------------------------- */

static void init_cond(void)
{
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&G.cond, &a);
    pthread_condattr_destroy(&a);
}

static void on_fork_prepare(void)
{
    pthread_mutex_lock(&G.lock);
}

static void on_fork_parent(void)
{
    pthread_mutex_unlock(&G.lock);
}

static void on_fork_child(void)
{
    /* The workers' memory belongs to threads that no longer exist here;
     * it is left alone (a few hundred bytes), not freed under their feet. */
    G.current = NULL;
    G.nworkers = 0;
    G.jobs = 0;
    G.sampler_busy = false;
    atomic_store(&recording, 0);
    pgof__sampler_atfork_child();
    init_cond();
    pthread_mutex_unlock(&G.lock);
}

static void init_once(void)
{
    init_cond();
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

static void report(int code, const char *msg)
{
    pgof_error_cb cb;
    void *ctx;

    pthread_mutex_lock(&G.lock);
    cb = G.err_cb;
    ctx = G.err_ctx;
    pthread_mutex_unlock(&G.lock);
    if (cb)
        cb(ctx, code, msg);
}

void pgof_set_error_callback(pgof_error_cb cb, void *ctx)
{
    pthread_once(&G.once, init_once);
    pthread_mutex_lock(&G.lock);
    G.err_cb = cb;
    G.err_ctx = ctx;
    pthread_mutex_unlock(&G.lock);
}

int pgof_set_rate(int hz, pgof_error *err)
{
    if (hz < 1 || hz > 1000)
        return pgof__fail(err, PGOF_EINVAL, "the rate must be 1 to 1000 samples per second, not %d",
                          hz);
    pthread_once(&G.once, init_once);
    pthread_mutex_lock(&G.lock);
    G.hz = hz;
    pthread_mutex_unlock(&G.lock);
    return 0;
}

/* ---- recording one window ------------------------------------------------- */

/*
 * Off the host's threads (or on pgof_profile_once's caller): records
 * duration_ms at hz and encodes the profile. The caller holds the sampler
 * token. *out is owned (free()).
 */
static int record(uint64_t duration_ms, int hz, uint8_t **out, size_t *len, pgof_error *err)
{
    int64_t period_ns = 1000000000LL / hz;
    pgof__agg *agg = pgof__agg_new();
    struct timespec wall;
    uint64_t t0, now, next_refresh, lost;
    int rc;

    *out = NULL;
    *len = 0;
    if (!agg)
        return pgof__fail(err, PGOF_ENOMEM, "out of memory starting a profile");
    clock_gettime(CLOCK_REALTIME, &wall);
    if ((rc = pgof__sampler_start(hz, err))) {
        pgof__agg_free(agg);
        return rc;
    }
    atomic_store(&recording, 1);
    t0 = mono_ms();
    next_refresh = t0 + REFRESH_MS;
    for (;;) {
        struct timespec ts;
        uint64_t wake;
        now = mono_ms();
        if (now >= t0 + duration_ms)
            break;
        wake = now + DRAIN_MS < t0 + duration_ms ? now + DRAIN_MS : t0 + duration_ms;
        ts = ms_to_ts(wake);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        pgof__agg_drain(agg, pgof__sampler_ring());
        if (mono_ms() >= next_refresh) {
            pgof__sampler_refresh();
            next_refresh += REFRESH_MS;
        }
    }
    pgof__sampler_stop();
    atomic_store(&recording, 0);
    pgof__agg_drain(agg, pgof__sampler_ring());
    lost = atomic_load(&pgof__sampler_ring()->dropped);
    rc = pgof__agg_encode(agg, period_ns, (int64_t)wall.tv_sec * 1000000000LL + wall.tv_nsec,
                          (int64_t)(mono_ms() - t0) * 1000000LL, lost, out, len, err);
    pgof__agg_free(agg);
    return rc;
}

int pgof_recording(void)
{
    return atomic_load(&recording);
}

/* Takes the sampler token if free. Under G.lock. */
static bool take_sampler(void)
{
    if (G.sampler_busy)
        return false;
    G.sampler_busy = true;
    G.jobs++;
    return true;
}

/* ---- the worker ------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    worker *w = arg;

    pthread_mutex_lock(&G.lock);
    for (;;) {
        uint64_t deadline = mono_ms() + w->interval_ms;
        struct timespec ts = ms_to_ts(deadline);
        uint8_t *buf = NULL;
        size_t len = 0;
        pgof_error err = {0, ""};
        int hz, rc;

        while (!w->stop && mono_ms() < deadline)
            pthread_cond_timedwait(&G.cond, &G.lock, &ts);
        while (!w->stop && !take_sampler())
            pthread_cond_wait(&G.cond, &G.lock);
        if (w->stop)
            break;
        hz = G.hz;
        pthread_mutex_unlock(&G.lock);

        rc = record(w->sample_ms, hz, &buf, &len, &err);
        pthread_mutex_lock(&G.lock);
        G.sampler_busy = false;
        pthread_cond_broadcast(&G.cond);
        pthread_mutex_unlock(&G.lock);
        if (rc == 0)
            rc = pgof__endpoint_submit(w->ep, buf, len, &err);
        free(buf);
        if (rc)
            report(rc, err.msg);

        pthread_mutex_lock(&G.lock);
        G.jobs--;
        pthread_cond_broadcast(&G.cond);
    }
    G.nworkers--;
    pthread_cond_broadcast(&G.cond);
    pthread_mutex_unlock(&G.lock);
    pgof_endpoint_free(w->ep);
    free(w);
    return NULL;
}

/* Under G.lock: stops the current worker, if any. */
static void disable_locked(void)
{
    if (G.current) {
        G.current->stop = true;
        G.current = NULL;
        pthread_cond_broadcast(&G.cond);
    }
}

int pgof_enable(uint64_t interval_ms, uint64_t sample_ms, pgof_endpoint *ep, pgof_error *err)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t t;
    worker *w;
    int rc;

    if (!ep)
        return pgof__fail(err, PGOF_EINVAL, "the endpoint must not be NULL");
    if (sample_ms == 0)
        return pgof__fail(err, PGOF_EINVAL, "the sample duration must be at least 1 ms");
    if (interval_ms > UINT64_MAX / 4 || sample_ms > UINT64_MAX / 4)
        return pgof__fail(err, PGOF_EINVAL, "the interval or sample duration is too long");
    if ((rc = pgof__sampler_check(err)))
        return rc;
    pthread_once(&G.once, init_once);
    if (!(w = calloc(1, sizeof(*w))))
        return pgof__fail(err, PGOF_ENOMEM, "out of memory");
    w->interval_ms = interval_ms;
    w->sample_ms = sample_ms;
    w->ep = ep;
    pgof__endpoint_ref(ep);

    pthread_mutex_lock(&G.lock);
    disable_locked();
    /* The thread inherits a mask with every signal but SIGPROF and the
     * synchronous faults blocked. */
    sigfillset(&all);
    sigdelset(&all, SIGPROF);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        pthread_mutex_unlock(&G.lock);
        pgof_endpoint_free(ep);
        free(w);
        return pgof__fail(err, PGOF_ESYS, "cannot start the profiler thread: %s", strerror(rc));
    }
    G.current = w;
    G.nworkers++;
    pthread_mutex_unlock(&G.lock);
    return 0;
}

void pgof_disable(void)
{
    pthread_once(&G.once, init_once);
    pthread_mutex_lock(&G.lock);
    disable_locked();
    pthread_mutex_unlock(&G.lock);
}

int pgof_wait_idle(uint64_t timeout_ms)
{
    struct timespec ts = ms_to_ts(mono_ms() + timeout_ms);
    int rc = 0;

    pthread_once(&G.once, init_once);
    pthread_mutex_lock(&G.lock);
    while (G.jobs > 0 || G.nworkers > (G.current ? 1 : 0)) {
        if (pthread_cond_timedwait(&G.cond, &G.lock, &ts) == ETIMEDOUT) {
            rc = PGOF_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&G.lock);
    return rc;
}

/* ---- on demand -------------------------------------------------------------- */

int pgof_profile_once(uint64_t duration_ms, uint8_t **out, size_t *len, pgof_error *err)
{
    int hz, rc;

    *out = NULL;
    *len = 0;
    if (duration_ms == 0 || duration_ms > UINT64_MAX / 4)
        return pgof__fail(err, PGOF_EINVAL, "the duration must be at least 1 ms");
    pthread_once(&G.once, init_once);
    pthread_mutex_lock(&G.lock);
    if (!take_sampler()) {
        pthread_mutex_unlock(&G.lock);
        return pgof__fail(err, PGOF_EBUSY, "a profile is already being recorded");
    }
    hz = G.hz;
    pthread_mutex_unlock(&G.lock);
    rc = record(duration_ms, hz, out, len, err);
    pthread_mutex_lock(&G.lock);
    G.sampler_busy = false;
    G.jobs--;
    pthread_cond_broadcast(&G.cond);
    pthread_mutex_unlock(&G.lock);
    return rc;
}

int pgof_profile_once_file(uint64_t duration_ms, const char *path, pgof_error *err)
{
    uint8_t *buf;
    size_t len, off = 0;
    int fd, rc;

    if (!path)
        return pgof__fail(err, PGOF_EINVAL, "the path must not be NULL");
    if ((rc = pgof_profile_once(duration_ms, &buf, &len, err)))
        return rc;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = pgof__fail(err, PGOF_ESYS, "cannot create %.150s: %s", path, strerror(errno));
        goto out;
    }
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = pgof__fail(err, PGOF_ESYS, "writing %.150s: %s", path,
                            n < 0 ? strerror(errno) : "short write");
            break;
        }
        off += (size_t)n;
    }
    if (close(fd) && !rc)
        rc = pgof__fail(err, PGOF_ESYS, "closing %.150s: %s", path, strerror(errno));
out:
    free(buf);
    return rc;
}
