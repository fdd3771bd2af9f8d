/*
 * retention.h: PGOF_RETENTION: stored profiles older than the retention are
 * removed on a schedule (docs/configuration.md).
 *
 * DESIGN
 * Two halves. On the loop, a repeating timer (retention_start) that fires
 * once right away (so a restart applies the retention at once; the store
 * queues it behind its start-up load) and then every retention_interval_ms;
 * each tick asks the store for an expire operation. On the threadpool,
 * inside that store operation, retention_expire removes the expired files;
 * the store then rebuilds its running aggregate from what is left, so the
 * aggregate never counts a removed profile.
 *
 * A profile's stored time is the one in its file name (<unix ms>_<n>.pgo,
 * merged_<unix ms>_<n>.pgo: for a combined file that is the time of the
 * combine), else the file's modification time (mergeopts_file_time_ms).
 */
#ifndef COLLECTOR_RETENTION_H
#define COLLECTOR_RETENTION_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "collector/disk.h"

/* How often a retention is applied: a tenth of it, between 1 s and 1 h. */
uint64_t retention_interval_ms(uint64_t retention_ms);

typedef struct retention retention;

/*
 * Loop thread: starts the timer; tick(arg) runs on the loop at once and
 * then every retention_interval_ms(retention_ms). Returns owned.
 */
retention *retention_start(uv_loop_t *loop, uint64_t retention_ms, void (*tick)(void *arg),
                           void *arg);

/* Loop thread: stops the timer and frees r once its handle is closed. Safe
 * with NULL. */
void retention_stop(retention *r);

/*
 * Worker: unlinks every file of files[0..n) in dir stored before cutoff_ms,
 * then fsyncs the directory once. *removed counts them. Returns 0, or a
 * negative errno with one line in err (files removed before the failure
 * stay counted).
 */
int retention_expire(const char *dir, const disk_file *files, size_t n, uint64_t cutoff_ms,
                     size_t *removed, char *err, size_t errlen);

#endif /* COLLECTOR_RETENTION_H */
