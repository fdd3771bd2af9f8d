/*
 * util.c: allocation wrappers that abort on exhaustion, the clock, the
 * threadpool threads' scheduling priority, and the number of malloc arenas.
 */
#include "collector/util.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n) {
    char msg[96];
    int len = snprintf(msg, sizeof msg, "fatal: out of memory allocating %zu bytes\n", n);
    ssize_t w = write(STDERR_FILENO, msg, (size_t)len);
    (void)w;
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

uint64_t util_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int util_disk_full(int rc) {
    return rc == -ENOSPC || rc == -EDQUOT;
}

int util_storage_status(int rc) {
    if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM)
        return 503;
    return util_disk_full(rc) ? 507 : 500;
}

/*
 * The loop thread must answer within milliseconds while the pool threads
 * decode, merge and fsync at full rate. On 2 cores a loop thread that wakes
 * waits for a time slice behind them; a higher nice value on the pool lets
 * the scheduler run it first, and the pool still gets all the CPU the loop
 * leaves. But the pool then also yields to every other process on the
 * machine: with two busy loops beside it, submits fell to 670/s at +10 and
 * 1,258/s at +5. +5 keeps /healthz p99 under load below 5 ms
 * (docs/performance.md, fourth round). libuv's own fs requests run on the
 * same threads, so a thread runs them at normal priority only until it
 * first runs one of our jobs.
 */
int util_pool_nice_delta = 5;

/*
 * glibc (2.36, Debian 12) gives each thread that allocates an arena of its
 * own, up to 8 per CPU, so every pool thread warmed a heap of its own: on the
 * test VM, where a page fault costs about 11 µs, each of the 8 threads paid
 * about 60 of them the first time it encoded the merged profile (the first
 * fresh merges after a start took 1.8-2 ms, later ones 0.7), and RSS under
 * submits reached 25 MiB instead of 18. The pool's jobs allocate little
 * (decodes reuse spare profiles), so sharing costs no throughput
 * (docs/performance.md, eighth round).
 */
int util_limit_arenas(unsigned cpus) {
    const char *env = getenv("MALLOC_ARENA_MAX");
    const char *tunables = getenv("GLIBC_TUNABLES");
    if ((env != NULL && env[0] != '\0') ||
        (tunables != NULL && strstr(tunables, "malloc.arena_max") != NULL))
        return 0;
    int n = cpus < 2 ? 2 : (int)cpus;
#ifdef M_ARENA_MAX
    /* mallopt returns 1 on success; under ASan, whose allocator has no
     * arenas, it returns 0. */
    return mallopt(M_ARENA_MAX, n) == 1 ? n : -1;
#else
    return -1;
#endif
}

void util_pool_thread_init(void) {
    static __thread int done;
    if (done)
        return;
    done = 1;
    pid_t tid = gettid();
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)tid);
    if (nice == -1 && errno != 0)
        return;
    if (util_pool_nice_delta <= 0)
        return;
    nice = nice + util_pool_nice_delta > 19 ? 19 : nice + util_pool_nice_delta;
    /* Raising one's own nice value needs no privilege; a failure only
     * leaves the thread where it was. */
    (void)setpriority(PRIO_PROCESS, (id_t)tid, nice);
}
