/*
 * sampler.c: the SIGPROF handler, the ITIMER_PROF timer and the
 * frame-pointer unwinder. This is the only code of libpgof that runs in
 * signal context.
 *
 * DESIGN
 * Timer: by default one timer_create timer per thread on that thread's CPU
 * clock (CLOCK_THREAD_CPUTIME_ID of its tid) with SIGEV_THREAD_ID, so each
 * thread is signalled after every 1/hz seconds of its own CPU time, as Go
 * does since 1.18 (golang/go#35057). New threads get their timer when the
 * consumer rescans /proc/self/task (every 100 ms), so a thread's first
 * <= 100 ms are not sampled. A signal delivered late carries the missed
 * expirations in si_overrun; the sample then counts 1 + overrun periods,
 * so total CPU stays right even when the kernel (which checks CPU timers
 * on ticks, 250 Hz here) cannot deliver every period. PGOF_TIMER=itimer
 * selects the classic process-wide setitimer(ITIMER_PROF) instead (what
 * gperftools and Go before 1.18 do): on a loaded 2-core machine it lost
 * 25-40% of the CPU time (one pending process-directed SIGPROF absorbs the
 * next, and overruns are not reported) where per-thread timers stayed
 * within 3% of getrusage; docs/embedding.md has the figures.
 *
 * Handler: reads pc, frame pointer and stack pointer from the ucontext and
 * follows the chain of frame records (saved frame pointer, return address)
 * upward, at most PGOF__MAX_DEPTH frames, into a slot of the lock-free ring
 * (ring.c). No allocation, no locks, no library calls: only loads, stores
 * and lock-free atomics; errno is saved and restored anyway. A frame
 * pointer is followed only while it stays inside the writable mapping that
 * holds the interrupted stack pointer (that mapping is the running thread's
 * stack, so it stays mapped while the thread is interrupted), grows
 * strictly upward and is 8-byte aligned; code built without frame pointers
 * therefore cuts the stack short but cannot make the handler fault. On
 * x86-64 the handler also keeps the word at the stack pointer (when the
 * stack pointer is aligned and inside that same mapping) and whether the
 * stack pointer equals the frame pointer; the consumer (profile.c) decides
 * whether that word is the return address of a leaf that has no frame
 * record, and so the caller the walk missed. The
 * mapping list is read from /proc/self/maps by the consumer thread and
 * published through an atomic pointer; replaced lists are retired and freed
 * only at stop, after the in-flight counter says no handler runs.
 *
 * Host friendliness: start refuses (PGOF_EBUSY) when SIGPROF already has a
 * handler or ITIMER_PROF is running, so we never steal a host's profiler.
 * Stop disarms the timer, sets SIGPROF to SIG_IGN for an instant (POSIX:
 * that discards a pending SIGPROF, whose default action would kill the
 * process), then restores the previous action. SA_RESTART makes interrupted
 * system calls of the host restart instead of failing with EINTR.
 *
 * Threads: start/stop/refresh run on one thread at a time (pgof.c holds the
 * sampler token); the handler runs on any thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "embedded/internal.h"

#define RING_SLOTS 512

typedef struct stack_range {
    uintptr_t start, end;
} stack_range;

typedef struct stack_map {
    struct stack_map *retired_next;
    size_t n;
    stack_range r[]; /* sorted by start */
} stack_map;

typedef struct thread_timer {
    pid_t tid;
    timer_t id;
} thread_timer;

static struct {
    pthread_once_t once;
    pgof__slot *slots; /* mmap'd once, never unmapped: a late handler may
                          still write after stop */
    pgof__ring ring;
    _Atomic int active;      /* the handler records only while set */
    _Atomic int inflight;    /* handlers currently running */
    _Atomic(stack_map *) stacks;
    stack_map *retired;      /* replaced maps, freed at stop */
    _Atomic bool running;
    struct sigaction old_action;
    struct itimerval old_timer;
    bool itimer;             /* PGOF_TIMER=itimer: one process-wide timer */
    struct itimerspec period;
    thread_timer *timers;    /* per-thread mode: one per thread seen */
    size_t ntimers, captimers;
} S = {.once = PTHREAD_ONCE_INIT};

pgof__ring *pgof__sampler_ring(void)
{
    return &S.ring;
}

static void alloc_ring(void)
{
    void *p = mmap(NULL, RING_SLOTS * sizeof(pgof__slot), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    S.slots = p == MAP_FAILED ? NULL : p;
}

/* ---- the handler ------------------------------------------------------- */

static bool context_regs(const void *ucv, uintptr_t *pc, uintptr_t *fp, uintptr_t *sp)
{
    const ucontext_t *uc = ucv;
#if defined(__x86_64__)
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    *fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    *sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    return true;
#elif defined(__aarch64__)
    *pc = (uintptr_t)uc->uc_mcontext.pc;
    *fp = (uintptr_t)uc->uc_mcontext.regs[29];
    *sp = (uintptr_t)uc->uc_mcontext.sp;
    return true;
#else
    (void)uc, (void)pc, (void)fp, (void)sp;
    return false;
#endif
}

/* The end of the writable mapping holding sp, or 0. */
static uintptr_t stack_end(const stack_map *m, uintptr_t sp)
{
    size_t lo = 0, hi = m ? m->n : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sp < m->r[mid].start)
            hi = mid;
        else if (sp >= m->r[mid].end)
            lo = mid + 1;
        else
            return m->r[mid].end;
    }
    return 0;
}

/*
 * Walks frame records from fp while they stay in [sp, end). Reads other
 * frames' saved registers, which a sanitizer's shadow memory knows nothing
 * about, hence no instrumentation here.
 */
__attribute__((no_sanitize("address", "undefined")))
static uint32_t walk(uintptr_t *pcs, uint32_t n, uintptr_t fp, uintptr_t sp,
                     uintptr_t end)
{
    while (n < PGOF__MAX_DEPTH && fp >= sp && end >= 16 && fp <= end - 16 &&
           (fp & 7) == 0) {
        const uintptr_t *rec = (const uintptr_t *)fp;
        uintptr_t next = rec[0], ret = rec[1];
        if (ret < 4096)
            break;
        /* A return address points after the call; ret - 1 lies inside the
         * call instruction, so symbolization names the calling line. */
        pcs[n++] = ret - 1;
        if (next <= fp)
            break;
        fp = next;
    }
    return n;
}

#if defined(__x86_64__)
/* The word at sp, which the caller has checked lies in the writable mapping
 * holding the interrupted stack. Not instrumented, as for walk. */
__attribute__((no_sanitize("address", "undefined")))
static uintptr_t peek_word(uintptr_t sp)
{
    return *(const volatile uintptr_t *)sp;
}
#endif

static void on_sigprof(int sig, siginfo_t *si, void *ucv)
{
    int saved_errno = errno;
    uintptr_t pc, fp, sp;
    pgof__slot *slot;
    uint64_t pos;

    (void)sig;
    atomic_fetch_add_explicit(&S.inflight, 1, memory_order_acquire);
    if (atomic_load_explicit(&S.active, memory_order_acquire) &&
        context_regs(ucv, &pc, &fp, &sp) &&
        (slot = pgof__ring_claim(&S.ring, &pos)) != NULL) {
        stack_map *m = atomic_load_explicit(&S.stacks, memory_order_acquire);
        uintptr_t end = stack_end(m, sp);
        /* A per-thread timer that expired again before this signal was
         * delivered reports the missed periods as overruns. */
        int overrun = si && si->si_code == SI_TIMER ? si->si_overrun : 0;
        slot->weight = 1 + (uint32_t)(overrun > 0 && overrun < 1000 ? overrun : 0);
        slot->pc[0] = pc;
        slot->depth = walk(slot->pc, 1, fp, sp, end);
        slot->flags = 0;
        slot->sp_word = 0;
#if defined(__x86_64__)
        /* A leaf without a frame (or any function before its push rbp;
         * mov rbp, rsp) has its return address at sp while fp is still the
         * caller's, so the walk above skipped the caller. Keep that word
         * for the consumer to check against a call site (profile.c). */
        if (end >= 8 && sp <= end - 8 && (sp & 7) == 0) {
            slot->sp_word = peek_word(sp);
            slot->flags = PGOF__SLOT_SP_WORD | (sp == fp ? PGOF__SLOT_SP_IS_FP : 0);
        }
#endif
        pgof__ring_publish(&S.ring, slot, pos);
    }
    atomic_fetch_sub_explicit(&S.inflight, 1, memory_order_release);
    errno = saved_errno;
}

/* ---- writable mappings ------------------------------------------------- */

static void refresh_stacks(void);

/* Reads /proc/self/maps into a new sorted list of rw mappings, merging
 * adjacent ones (a thread stack and the guard-less region above it). */
static stack_map *read_stack_map(void)
{
    size_t cap = 64;
    stack_map *m = malloc(sizeof(*m) + cap * sizeof(stack_range));
    char line[512];
    FILE *f;

    if (!m)
        return NULL;
    m->n = 0;
    m->retired_next = NULL;
    f = fopen("/proc/self/maps", "re");
    if (!f)
        return m;
    while (fgets(line, sizeof(line), f)) {
        unsigned long s, e;
        char perms[8];
        size_t len = strlen(line);
        if (len && line[len - 1] != '\n') {
            int c; /* a long path: skip the rest of the line */
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
        }
        if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3 || perms[0] != 'r' ||
            perms[1] != 'w')
            continue;
        if (m->n && m->r[m->n - 1].end == s) {
            m->r[m->n - 1].end = e;
            continue;
        }
        if (m->n == cap) {
            stack_map *nm = realloc(m, sizeof(*m) + 2 * cap * sizeof(stack_range));
            if (!nm)
                break;
            m = nm;
            cap *= 2;
        }
        m->r[m->n].start = s;
        m->r[m->n].end = e;
        m->n++;
    }
    fclose(f);
    return m;
}

/* Gives every thread that has none yet a CPU-time timer signalling it. */
static void arm_new_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        struct sigevent sev;
        timer_t id;
        size_t i;
        if (tid <= 0 || *end)
            continue;
        for (i = 0; i < S.ntimers && S.timers[i].tid != tid; i++)
            ;
        if (i < S.ntimers)
            continue;
        if (S.ntimers == S.captimers) {
            size_t cap = S.captimers ? 2 * S.captimers : 64;
            thread_timer *n = realloc(S.timers, cap * sizeof(*n));
            if (!n)
                break;
            S.timers = n;
            S.captimers = cap;
        }
        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev.sigev_signo = SIGPROF;
        sev._sigev_un._tid = (pid_t)tid;
        /* The kernel's CPU clock id of thread tid (MAKE_THREAD_CPUCLOCK
         * with CPUCLOCK_SCHED, as pthread_getcpuclockid builds it). */
        if (timer_create((clockid_t)((~(unsigned long)tid) << 3) | 6, &sev, &id))
            continue; /* the thread has exited meanwhile */
        if (timer_settime(id, 0, &S.period, NULL)) {
            timer_delete(id);
            continue;
        }
        S.timers[S.ntimers].tid = (pid_t)tid;
        S.timers[S.ntimers].id = id;
        S.ntimers++;
    }
    closedir(d);
}

void pgof__sampler_refresh(void)
{
    if (!S.itimer)
        arm_new_threads();
    refresh_stacks();
}

static void refresh_stacks(void)
{
    stack_map *m = read_stack_map(), *old;

    if (!m)
        return;
    old = atomic_exchange_explicit(&S.stacks, m, memory_order_acq_rel);
    if (old) {
        old->retired_next = S.retired;
        S.retired = old;
    }
}

/* ---- start and stop ---------------------------------------------------- */

static bool is_handler(const struct sigaction *sa)
{
    if (sa->sa_flags & SA_SIGINFO)
        return sa->sa_sigaction != NULL;
    return sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN;
}

/* Reads the current SIGPROF action and ITIMER_PROF into old_*, refusing a
 * handler or a running timer that is not ours. */
static int check_free(struct sigaction *old_action, struct itimerval *old_timer,
                      pgof_error *err)
{
    if (sigaction(SIGPROF, NULL, old_action))
        return pgof__fail(err, PGOF_ESYS, "sigaction(SIGPROF): %s", strerror(errno));
    if (is_handler(old_action))
        return pgof__fail(err, PGOF_EBUSY,
                          "another SIGPROF handler is installed (%p); libpgof will not replace it",
                          (old_action->sa_flags & SA_SIGINFO) ? (void *)old_action->sa_sigaction
                                                             : (void *)old_action->sa_handler);
    if (getitimer(ITIMER_PROF, old_timer))
        return pgof__fail(err, PGOF_ESYS, "getitimer(ITIMER_PROF): %s", strerror(errno));
    if (old_timer->it_value.tv_sec || old_timer->it_value.tv_usec)
        return pgof__fail(err, PGOF_EBUSY,
                          "an ITIMER_PROF timer is already running in this process; "
                          "libpgof will not replace it");
    return 0;
}

int pgof__sampler_check(pgof_error *err)
{
    struct sigaction sa;
    struct itimerval it;
    uintptr_t a, b, c;

    if (!context_regs(&(ucontext_t){0}, &a, &b, &c))
        return pgof__fail(err, PGOF_ENOTSUP,
                          "libpgof does not know how to unwind on this CPU architecture");
    if (S.running) /* our own handler: the window in progress will end */
        return 0;
    return check_free(&sa, &it, err);
}

int pgof__sampler_start(int hz, pgof_error *err)
{
    struct sigaction sa;
    struct itimerval it;
    int rc;

    if (S.running)
        return pgof__fail(err, PGOF_EBUSY, "the sampler is already running");
    if ((rc = pgof__sampler_check(err)))
        return rc;
    pthread_once(&S.once, alloc_ring);
    if (!S.slots)
        return pgof__fail(err, PGOF_ENOMEM, "cannot map %zu bytes for the sample ring",
                          RING_SLOTS * sizeof(pgof__slot));
    if ((rc = check_free(&S.old_action, &S.old_timer, err)))
        return rc;

    pgof__ring_init(&S.ring, S.slots, RING_SLOTS);
    refresh_stacks();
    atomic_store(&S.active, 1);

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, NULL)) {
        int e = errno;
        atomic_store(&S.active, 0);
        return pgof__fail(err, PGOF_ESYS, "sigaction(SIGPROF): %s", strerror(e));
    }
    {
        const char *mode = getenv("PGOF_TIMER");
        S.itimer = mode && strcmp(mode, "itimer") == 0;
    }
    memset(&it, 0, sizeof(it));
    it.it_interval.tv_usec = 1000000 / hz;
    it.it_value = it.it_interval;
    S.period.it_interval.tv_sec = 0;
    S.period.it_interval.tv_nsec = 1000000000L / hz;
    S.period.it_value = S.period.it_interval;
    S.ntimers = 0;
    if (S.itimer && setitimer(ITIMER_PROF, &it, NULL)) {
        int e = errno;
        atomic_store(&S.active, 0);
        sigaction(SIGPROF, &S.old_action, NULL);
        return pgof__fail(err, PGOF_ESYS, "setitimer(ITIMER_PROF): %s", strerror(e));
    }
    if (!S.itimer) {
        arm_new_threads();
        if (S.ntimers == 0) {
            atomic_store(&S.active, 0);
            sigaction(SIGPROF, &S.old_action, NULL);
            return pgof__fail(err, PGOF_ESYS, "timer_create(CLOCK_THREAD_CPUTIME_ID): %s",
                              strerror(errno));
        }
    }
    S.running = true;
    return 0;
}

void pgof__sampler_stop(void)
{
    struct itimerval zero;
    struct sigaction ign;
    stack_map *m;
    size_t i;

    if (!S.running)
        return;
    memset(&zero, 0, sizeof(zero));
    if (S.itimer)
        setitimer(ITIMER_PROF, &zero, NULL);
    for (i = 0; i < S.ntimers; i++)
        timer_delete(S.timers[i].id);
    S.ntimers = 0;
    atomic_store(&S.active, 0);
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPROF, &ign, NULL); /* discards a pending SIGPROF */
    sigaction(SIGPROF, &S.old_action, NULL);
    setitimer(ITIMER_PROF, &S.old_timer, NULL);
    while (atomic_load_explicit(&S.inflight, memory_order_acquire))
        sched_yield();
    m = atomic_exchange(&S.stacks, NULL);
    free(m);
    while ((m = S.retired)) {
        S.retired = m->retired_next;
        free(m);
    }
    S.running = false;
}

void pgof__sampler_atfork_child(void)
{
    if (!S.running)
        return;
    /* The child has no ITIMER_PROF (fork does not inherit timers) but does
     * inherit our handler: put the host's action back. The parent's maps
     * are left to the parent. */
    atomic_store(&S.active, 0);
    atomic_store(&S.inflight, 0);
    sigaction(SIGPROF, &S.old_action, NULL);
    atomic_store(&S.stacks, NULL);
    S.retired = NULL;
    S.timers = NULL; /* timer_create timers are not inherited either */
    S.ntimers = S.captimers = 0;
    S.running = false;
}
