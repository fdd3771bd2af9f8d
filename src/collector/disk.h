/*
 * disk.h: the profile directory's on-disk protocol, with blocking calls.
 *
 * DESIGN
 * Everything the store does to files lives here, as plain blocking
 * functions with no libuv and no shared state, so they run on the threadpool
 * and are unit-tested alone. The directory holds:
 *
 *   <unix ms>_<counter>.pgo          one submitted profile (gzip pprof)
 *   merged_<unix ms>_<counter>.pgo   the result of a combine
 *   .pgof-tmp-*                      temporary files (swept at start-up)
 *   combine.journal                  present only while a combine commits
 *   quarantine/                      stored files that no longer decode
 *
 * The first two are the Go collector's names, so its directories work as
 * they are; every regular file "*.pgo" not starting with '.' is a profile.
 *
 * Durability: a profile is written to a temporary file, fsync'd, renamed to
 * its final name without replacing anything, and the directory fsync'd
 * (one directory fsync may cover several renames: group commit).
 *
 * Combine (crash-safe at every instant):
 *   1. the merged profile goes to a temporary file, fsync'd;
 *   2. combine.journal (written to a temporary file, fsync'd, renamed, dir
 *      fsync'd) names the merged file's final name and every input;
 *   3. the merged file is renamed into place, dir fsync'd (commit point);
 *   4. the inputs are unlinked, dir fsync'd; 5. the journal is unlinked.
 * disk_replay_journal() at start-up finishes step 4 if the merged file
 * exists and otherwise drops the journal, so the directory always sums to
 * exactly the profiles that were acknowledged.
 *
 * Errors: 0 or a negative errno-style (uv) code, with one line in err.
 */
#ifndef COLLECTOR_DISK_H
#define COLLECTOR_DISK_H

#include <stddef.h>
#include <stdint.h>

#define DISK_JOURNAL "combine.journal"
#define DISK_QUARANTINE "quarantine"
#define DISK_NAME_MAX 96

typedef struct disk_file {
    char name[DISK_NAME_MAX];
    uint64_t size;
} disk_file;

/* Whether name is a stored profile's file name. */
int disk_is_profile_name(const char *name);

/* Removes every temporary file; returns how many, or a negative code. */
int disk_sweep_temps(const char *dir, char *err, size_t errlen);

/*
 * Finishes or drops an interrupted combine. Returns 0 when there was no
 * journal, 1 when one was replayed (what happened is in msg), or a negative
 * code. DISK_EUNSAFE means the directory cannot be trusted yet: the combine
 * committed but an input could not be removed (or the journal could not be
 * read), so loading the directory now would count that input twice; the
 * journal stays for the next attempt. Other negative codes (an incomplete
 * journal) leave every profile file as it was, so loading is safe.
 */
#define DISK_EUNSAFE (-10001)
int disk_replay_journal(const char *dir, char *msg, size_t msglen);

/* Lists the stored profiles, sorted by name (returns owned *files). */
int disk_list_profiles(const char *dir, disk_file **files, size_t *n, char *err,
                       size_t errlen);

/* Moves dir/name into dir/quarantine/ (created if needed). */
int disk_quarantine(const char *dir, const char *name, char *err, size_t errlen);

int disk_fsync_dir(const char *dir);

/*
 * Starts writing fd's data to the disk without waiting (sync_file_range),
 * so the device works while the caller decodes and the fsync that follows
 * waits less. Errors are left for that fsync to report.
 */
void disk_start_write_out(int fd);

/*
 * Renames tmp_path to a new "<prefix><ms>_<counter>.pgo" that did not exist
 * (bumping *counter), then fsyncs the directory. The name is written into
 * name (DISK_NAME_MAX).
 */
int disk_commit(const char *dir, const char *tmp_path, const char *prefix,
                uint64_t *counter, char *name, char *err, size_t errlen);

/*
 * disk_commit without the directory fsync: the rename only. A caller that
 * places several files (the store's group commit) fsyncs the directory once
 * with disk_fsync_dir() before it tells anyone they are stored.
 */
int disk_place(const char *dir, const char *tmp_path, const char *prefix, uint64_t *counter,
               char *name, char *err, size_t errlen);

/*
 * Writes in_fd's contents (from offset 0) gzip-compressed into out_fd.
 */
int disk_gzip_fd(int in_fd, int out_fd, char *err, size_t errlen);

/* Writes len bytes to fd, retrying short writes and EINTR. */
int disk_write_all(int fd, const void *data, size_t len);

/*
 * The combine protocol above: stores data as a new merged_*.pgo replacing
 * the n inputs. On success the merged file's name is in name. When it
 * fails before the commit point the inputs are intact; after it, the
 * journal stays for disk_replay_journal() (*committed is set).
 */
int disk_combine(const char *dir, const void *data, size_t len, const disk_file *inputs,
                 size_t n, uint64_t *counter, char *name, int *committed, char *err,
                 size_t errlen);

/* A test seam: when set, disk_combine calls it after each numbered step. */
extern void (*disk__combine_hook)(int step);

#endif /* COLLECTOR_DISK_H */
