/*
 * util.h: small helpers shared by the collector's files.
 *
 * DESIGN
 * x*alloc() are for small internal objects whose size we choose: they abort
 * with a message when memory runs out (Redis zmalloc). Sizes a client
 * controls never go through them; those use try_ functions and turn failure
 * into 413 or 503. container_of() recovers a struct from an embedded member
 * (libuv's uv__work_done does the same).
 */
#ifndef COLLECTOR_UTIL_H
#define COLLECTOR_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member)                                        \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Whether a negative uv/errno code means the disk (or quota) is full. */
int util_disk_full(int rc);

/* The HTTP status for a failed file operation on an upload (rc a negative
 * errno): a full disk is 507, running out of descriptors or memory is
 * overload (503, the client should try again), anything else is ours (500).
 * Creating, writing and syncing the file all answer the same way. */
int util_storage_status(int rc);

/* Milliseconds since the Unix epoch, from the wall clock. */
uint64_t util_now_ms(void);

/*
 * Runs on a threadpool thread, first thing in every work_cb of ours: the
 * first call on a thread lowers its scheduling priority (nice
 * +util_pool_nice_delta relative to the process), so the loop thread is
 * scheduled ahead of the pool.
 * Later calls return at once (a thread-local flag).
 */
void util_pool_thread_init(void);

/* How much nicer than the process pool threads make themselves (set once by
 * main before the pool starts; PGOF_WORKER_NICE, 5 by default). */
extern int util_pool_nice_delta;

/*
 * Call from main before any other thread exists. Limits glibc to max(2,
 * cpus) malloc arenas, the main one included, unless the operator set a
 * limit (a non-empty MALLOC_ARENA_MAX, or glibc.malloc.arena_max in
 * GLIBC_TUNABLES). Returns the limit set, 0 when the operator's stands, or
 * -1 when the allocator took none (not glibc's, or ASan's).
 */
int util_limit_arenas(unsigned cpus);

#endif /* COLLECTOR_UTIL_H */
