/*
 * durable.h: how the store makes a batch of new profile files durable.
 *
 * DESIGN
 * A 204 promises that the profile is on stable storage. Each new file needs
 * its data, its inode and the allocation metadata it dirtied written out
 * and the device's write cache flushed, then the rename into place made
 * durable by a directory fsync. Two ways to get the first part:
 *
 *   fsync    every submit job fsyncs its own file. On ext4 without a
 *            journal that is several synchronous writes and one cache flush
 *            per file (and a sync of the parent directory, which the job's
 *            create dirtied); concurrent submits do not share any of it.
 *   batch    every submit job only starts its file's data on its way to
 *            the disk (sync_file_range) and keeps the file open; the group
 *            commit waits for each file's data, which reports that file's
 *            write errors through its own descriptor (by then the wait
 *            rarely sleeps), then calls syncfs() once for the whole batch
 *            (inodes, bitmaps, one cache flush), before any file is renamed
 *            into place. The guarantees are the same; the flushes are two
 *            per batch, not one per file, and no submit job sleeps on the
 *            disk.
 *
 * syncfs also writes out every other dirty file of the filesystem, so its
 * cost is not only ours. When one takes longer than durable_slow_ms the
 * store uses fsync for durable_backoff_ms and then tries batches again.
 * syncfs reports writeback errors only since Linux 5.8; on older kernels,
 * and with PGOF_SYNC=fsync, it is never used.
 *
 * Threads: durable_use_batch() is read by submit jobs on any pool thread;
 * everything else is called by the running store operation only (one at a
 * time, see store.h), or at creation and free on the loop thread.
 */
#ifndef COLLECTOR_DURABLE_H
#define COLLECTOR_DURABLE_H

#include <stddef.h>

typedef struct durable durable;

/* Defaults; durable_set_timing() changes them (tests). */
#define DURABLE_SLOW_MS 100
#define DURABLE_BACKOFF_MS 30000

/*
 * Returns owned. allow_batch is 0 for PGOF_SYNC=fsync. When batches cannot
 * be used (old kernel, directory not openable), why says so and the result
 * always uses fsync; why is "" otherwise.
 */
durable *durable_new(const char *dir, int allow_batch, char *why, size_t whylen);
void durable_free(durable *d);

void durable_set_timing(durable *d, unsigned slow_ms, unsigned backoff_ms);

/* Any thread: whether a submit job should leave its file's sync to the
 * batch (1) or fsync it itself (0). */
int durable_use_batch(const durable *d);

/*
 * Store operation: the batch mode is back after its back-off. Returns 1 when
 * this call switched it back (for the log).
 */
int durable_resume(durable *d, double now);

/*
 * Store operation: one syncfs for every file written since the last one.
 * Returns 0 or a negative code. *seconds gets its duration; when it was
 * slow the store falls back to fsync and note says so (else note is "").
 */
int durable_sync_batch(durable *d, double now, double *seconds, char *note, size_t notelen);

/*
 * Waits until fd's data has reached the device (no cache flush) and
 * returns its write errors: the submit job's part in batch mode. Blocking.
 */
int durable_write_out(int fd);

/*
 * Starts writing fd's data out without waiting, so the device works while
 * the job decodes. Errors are left for durable_write_out or fsync.
 */
void durable_start_write_out(int fd);

#endif /* COLLECTOR_DURABLE_H */
