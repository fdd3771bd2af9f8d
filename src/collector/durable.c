/*
 * durable.c: batch syncs with a fall-back to per-file fsync (see durable.h).
 *
 * The mode is one atomic int read by submit jobs; only the store operation
 * running at the time writes it. A job that read "batch" just before a
 * switch to fsync still leaves its file to the batch: the batch then calls
 * syncfs for it whatever the mode, so no file is ever left unsynced.
 */
#include "collector/durable.h"

#include "collector/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

struct durable {
    int dirfd;          /* -1 when batches are never used */
    int use_batch;      /* atomic: the current mode */
    double resume_at;   /* monotonic seconds: end of the fsync back-off */
    unsigned slow_ms, backoff_ms;
};

/* syncfs() returns writeback errors since Linux 5.8 (errseq on the
 * superblock); before that it returned 0 even when a write had failed. */
static int kernel_reports_syncfs_errors(char *release, size_t len) {
    struct utsname u;
    unsigned major = 0, minor = 0;
    if (uname(&u) != 0)
        return 0;
    snprintf(release, len, "%s", u.release);
    if (sscanf(u.release, "%u.%u", &major, &minor) != 2)
        return 0;
    return major > 5 || (major == 5 && minor >= 8);
}

durable *durable_new(const char *dir, int allow_batch, char *why, size_t whylen) {
    durable *d = xcalloc(1, sizeof *d);
    char release[128] = "";
    d->dirfd = -1;
    d->slow_ms = DURABLE_SLOW_MS;
    d->backoff_ms = DURABLE_BACKOFF_MS;
    why[0] = '\0';
    if (!allow_batch)
        return d;
    if (!kernel_reports_syncfs_errors(release, sizeof release)) {
        snprintf(why, whylen,
                 "kernel %s: syncfs reports write errors only since Linux 5.8, so every "
                 "profile is fsync'd on its own",
                 release[0] ? release : "unknown");
        return d;
    }
    /* Kept open for the store's life: syncfs reports the errors that
     * happened since the descriptor's previous syncfs (or its open). */
    d->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d->dirfd < 0) {
        snprintf(why, whylen, "cannot open %s (%s), so every profile is fsync'd on its own", dir,
                 strerror(errno));
        return d;
    }
    __atomic_store_n(&d->use_batch, 1, __ATOMIC_RELAXED);
    return d;
}

void durable_free(durable *d) {
    if (d == NULL)
        return;
    if (d->dirfd >= 0)
        close(d->dirfd);
    free(d);
}

void durable_set_timing(durable *d, unsigned slow_ms, unsigned backoff_ms) {
    d->slow_ms = slow_ms;
    d->backoff_ms = backoff_ms;
}

int durable_use_batch(const durable *d) {
    return __atomic_load_n(&d->use_batch, __ATOMIC_RELAXED);
}

int durable_resume(durable *d, double now) {
    if (d->dirfd < 0 || durable_use_batch(d) || now < d->resume_at)
        return 0;
    __atomic_store_n(&d->use_batch, 1, __ATOMIC_RELAXED);
    return 1;
}

int durable_sync_batch(durable *d, double now, double *seconds, char *note, size_t notelen) {
    struct timespec a, b;
    note[0] = '\0';
    *seconds = 0;
    if (d->dirfd < 0)
        return UV_EINVAL; /* no job leaves its sync to the batch then */
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = syncfs(d->dirfd) == 0 ? 0 : -errno;
    clock_gettime(CLOCK_MONOTONIC, &b);
    *seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    if (*seconds * 1000 > d->slow_ms && durable_use_batch(d)) {
        __atomic_store_n(&d->use_batch, 0, __ATOMIC_RELAXED);
        d->resume_at = now + *seconds + d->backoff_ms / 1000.0;
        snprintf(note, notelen,
                 "syncfs took %.0f ms (other files on the filesystem were being written?): "
                 "each profile is fsync'd on its own for the next %.0f s",
                 *seconds * 1000, d->backoff_ms / 1000.0);
    }
    return rc;
}

int durable_write_out(int fd) {
    unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                     SYNC_FILE_RANGE_WAIT_AFTER;
    return sync_file_range(fd, 0, 0, flags) == 0 ? 0 : -errno;
}

void durable_start_write_out(int fd) {
    /* Only a head start: a failure here shows up in the wait or fsync. */
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}
