/*
 * retention.c: PGOF_RETENTION's timer and expiry (see retention.h).
 *
 * retention_start/retention_stop and the timer callback run on the loop
 * thread; retention_expire on the threadpool inside a store operation.
 */
#include "collector/retention.h"

#include "collector/util.h"
#include "common/mergeopts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct retention {
    uv_timer_t timer;
    void (*tick)(void *);
    void *arg;
};

uint64_t retention_interval_ms(uint64_t retention_ms) {
    uint64_t iv = retention_ms / 10;
    if (iv < 1000)
        iv = 1000;
    if (iv > 3600 * 1000)
        iv = 3600 * 1000;
    return iv;
}

static void on_tick(uv_timer_t *t) {
    retention *r = t->data;
    r->tick(r->arg);
}

retention *retention_start(uv_loop_t *loop, uint64_t retention_ms, void (*tick)(void *),
                           void *arg) {
    retention *r = xcalloc(1, sizeof *r);
    r->tick = tick;
    r->arg = arg;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_tick, 0, retention_interval_ms(retention_ms));
    return r;
}

static void on_closed(uv_handle_t *h) {
    free(h->data);
}

void retention_stop(retention *r) {
    if (r == NULL)
        return;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}

int retention_expire(const char *dir, const disk_file *files, size_t n, uint64_t cutoff_ms,
                     size_t *removed, char *err, size_t errlen) {
    int rc = 0;
    *removed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        uint64_t t;
        /* A file whose time cannot be read is kept: never remove on doubt. */
        if (mergeopts_file_time_ms(dir, files[i].name, &t) != 0 || t >= cutoff_ms)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = -errno;
            snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            break;
        }
        (*removed)++;
    }
    if (*removed > 0) {
        int frc = disk_fsync_dir(dir);
        if (frc != 0 && rc == 0) {
            rc = frc;
            snprintf(err, errlen, "cannot fsync %s: %s", dir, strerror(-frc));
        }
    }
    return rc;
}
