/*
 * pgof.h: libpgof, the embedded CPU profiler for C and C++ processes of a
 * pgo-fleet. Link it (-lpgof, or `pkg-config --libs pgof`), call
 * pgof_enable once, and every interval the process records a CPU profile for
 * a while and posts it, gzip-compressed pprof, to a pgo-fleet collector.
 *
 * DESIGN
 * The shape mirrors the original project's Go package
 * (github.com/t2bot/pgo-fleet/embedded): an endpoint made from a submit URL
 * and a key, Enable(interval, sample duration, endpoint), Disable, and an
 * optional error callback that is silent by default. Differences from Go:
 * durations are milliseconds, errors are negative PGOF_E* codes plus a
 * sentence in a pgof_error, and endpoints are reference counted so the
 * caller may free its handle at once after pgof_enable.
 *
 * What happens when: nothing at all until pgof_enable or pgof_profile_once
 * (no constructors, no threads, no signal handler). pgof_enable starts one
 * background thread. It waits one interval, then installs a SIGPROF handler
 * and a CPU-time timer on every thread (100 samples per CPU-second by
 * default), drains the sampled stacks while the window lasts, removes the
 * timer and handler again (restoring what was there), symbolizes, builds
 * the pprof profile, submits it, and only then starts waiting again.
 * See docs/embedding.md for the costs and the host requirements (frame
 * pointers: build the host with -fno-omit-frame-pointer).
 *
 * Threads: every function here may be called from any thread at any time
 * (never from a signal handler). Callbacks (error callback, custom endpoint)
 * run on libpgof's background thread, or on the thread calling
 * pgof_profile_once; they must not call pgof_enable/pgof_disable/
 * pgof_wait_idle (those would wait for the callback itself).
 *
 * Ownership: strings passed in are copied. "Returns owned" results are
 * freed with the matching function (free() for profile bytes).
 */
#ifndef PGOF_H
#define PGOF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PGOF_VERSION_MAJOR 0
#define PGOF_VERSION_MINOR 1
#define PGOF_VERSION_PATCH 0
/* One number for comparisons: 0x00MMmmpp. */
#define PGOF_VERSION                                                           \
    ((PGOF_VERSION_MAJOR << 16) | (PGOF_VERSION_MINOR << 8) | PGOF_VERSION_PATCH)

/* The version of the library actually linked (may differ from the macros). */
int pgof_version(void);

/* Error codes: 0 is success, each failure is negative. */
enum {
    PGOF_OK = 0,
    PGOF_EINVAL = -1,   /* a bad argument (URL, duration, rate, ...) */
    PGOF_ENOMEM = -2,   /* allocation failed */
    PGOF_EBUSY = -3,    /* SIGPROF or ITIMER_PROF is already in use, or a
                           profile is already being recorded */
    PGOF_ESYS = -4,     /* a system call failed (thread, signal, timer, file) */
    PGOF_ENOTSUP = -5,  /* this CPU architecture is not supported */
    PGOF_EPROFILE = -6, /* building or encoding the profile failed */
    PGOF_ESUBMIT = -7,  /* the endpoint refused or did not answer */
    PGOF_ETIMEDOUT = -8 /* pgof_wait_idle ran out of time */
};

/* Room for one human sentence; longer messages are truncated. */
#define PGOF_ERRMSG_MAX 256

typedef struct pgof_error {
    int code;
    char msg[PGOF_ERRMSG_MAX];
} pgof_error;

/* A short constant name for a code ("busy", "submit", ...). */
const char *pgof_strerror(int code);

/* ---- endpoints --------------------------------------------------------- */

typedef struct pgof_endpoint pgof_endpoint;

/*
 * An endpoint that POSTs each profile to submit_url (http or https, e.g.
 * "http://collector:8080/v1/submit") with "Authorization: Bearer <key>" and
 * Content-Type application/octet-stream, using libcurl with a 60 s timeout
 * (see pgof_endpoint_set_timeout). 200 and 204 are success. Fails with
 * PGOF_EINVAL for a URL that does not parse or is not http(s), or an empty
 * or multi-line key. On success *out is owned (pgof_endpoint_free).
 */
int pgof_endpoint_new(const char *submit_url, const char *key,
                      pgof_endpoint **out, pgof_error *err);

/*
 * Called with each finished profile (gzip-compressed pprof, len bytes,
 * borrowed for the call). Return 0 for success, or non-zero after writing a
 * reason into errbuf (errlen bytes), which goes to the error callback.
 */
typedef int (*pgof_submit_cb)(void *ctx, const uint8_t *data, size_t len,
                              char *errbuf, size_t errlen);

/* An endpoint that hands each profile to cb instead of a server. */
int pgof_endpoint_new_custom(pgof_submit_cb cb, void *ctx, pgof_endpoint **out,
                             pgof_error *err);

/* The whole-request timeout of an HTTP endpoint (default 60000 ms). */
int pgof_endpoint_set_timeout(pgof_endpoint *ep, uint64_t timeout_ms,
                              pgof_error *err);

/* Drops the caller's reference; the endpoint lives on while pgof_enable's
 * background thread still uses it. NULL is ignored. */
void pgof_endpoint_free(pgof_endpoint *ep);

/* ---- continuous profiling ---------------------------------------------- */

/*
 * Errors of the background thread (a failed submit, a failed profile) go to
 * cb(ctx, code, message) on that thread. NULL (the default) is silent, like
 * the original's ErrorFunc. Takes effect for the next error reported.
 */
typedef void (*pgof_error_cb)(void *ctx, int code, const char *msg);
void pgof_set_error_callback(pgof_error_cb cb, void *ctx);

/*
 * Sampling rate in samples per CPU-second, 1..1000 (default 100, as Go).
 * Applies to profiles started afterwards. Rates above the kernel tick rate
 * (CONFIG_HZ, often 250) lose accuracy.
 */
int pgof_set_rate(int hz, pgof_error *err);

/*
 * Starts profiling: wait interval_ms, profile for sample_ms, submit to ep,
 * and repeat; the next wait starts after the submission ends. Implies
 * pgof_disable first. Takes a reference on ep. Returns PGOF_EINVAL for a
 * zero sample_ms, PGOF_ESYS if the thread cannot start. Conflicts with
 * another SIGPROF user are found when a window starts and reported to the
 * error callback (pgof_profile_once reports them directly).
 */
int pgof_enable(uint64_t interval_ms, uint64_t sample_ms, pgof_endpoint *ep,
                pgof_error *err);

/*
 * Stops the next run and returns at once. A profile being recorded is
 * finished and submitted (use pgof_wait_idle to wait for that). Calling it
 * when nothing is enabled does nothing.
 */
void pgof_disable(void);

/*
 * Waits until no profile is being recorded or submitted and no background
 * thread of a disabled pgof_enable remains, at most timeout_ms. Returns 0
 * or PGOF_ETIMEDOUT. For orderly shutdown and tests; after pgof_disable.
 */
int pgof_wait_idle(uint64_t timeout_ms);

/* Whether a window is being recorded right now (1) or not (0): for tests
 * and status pages; the answer may be stale by the time it is used. */
int pgof_recording(void);

/* ---- on demand ----------------------------------------------------------- */

/*
 * Records one profile of duration_ms on the calling thread (which sleeps
 * meanwhile) and returns it as gzip-compressed pprof in *out (returns owned,
 * free()), *len bytes. Fails with PGOF_EBUSY if a profile is already being
 * recorded (by pgof_enable's thread or another caller) or another SIGPROF
 * handler or a running ITIMER_PROF timer is found in the process.
 */
int pgof_profile_once(uint64_t duration_ms, uint8_t **out, size_t *len,
                      pgof_error *err);

/* The same, written to path (created or truncated, mode 0644). */
int pgof_profile_once_file(uint64_t duration_ms, const char *path,
                           pgof_error *err);

#ifdef __cplusplus
}
#endif

#endif /* PGOF_H */
