/*
 * internal.h: what libpgof's files share; nothing here is exported (the
 * shared library exports pgof_* only, see libpgof.map, and the static
 * library localizes everything else when it is built).
 *
 * DESIGN
 * Four parts, one file each, and the public entry points in pgof.c:
 *   ring.c     a lock-free ring of fixed-size stack slots, written by the
 *              SIGPROF handler (many producers), read by one consumer;
 *   sampler.c  the SIGPROF handler, the per-thread CPU timers and the
 *              frame-pointer unwinder (the only code that runs in signal
 *              context);
 *   profile.c  the consumer side: aggregates drained stacks, then
 *              symbolizes (symbols.c) and builds the pprof profile with the
 *              engine's builder;
 *   symbols.c  loaded objects, build ids, function names, files and lines;
 *   endpoint.c endpoints (libcurl POST or a custom callback).
 */
#ifndef PGOF_INTERNAL_H
#define PGOF_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "embedded/pgof.h"

#define PGOF__PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Fills err (if not NULL) with code and the sentence; returns code. */
int pgof__fail(pgof_error *err, int code, const char *fmt, ...) PGOF__PRINTF(3, 4);

/* ---- ring (ring.c) ------------------------------------------------------ */

/* Deepest stack recorded; deeper stacks keep their 64 innermost frames. */
#define PGOF__MAX_DEPTH 64

/* pgof__slot.flags (x86-64 only; 0 elsewhere). */
#define PGOF__SLOT_SP_WORD 1u  /* sp_word holds the word at the interrupted SP */
#define PGOF__SLOT_SP_IS_FP 2u /* SP == FP: that word is a saved frame pointer */

typedef struct pgof__slot {
    _Atomic uint64_t seq; /* Vyukov sequence: free when == position */
    uint32_t depth;
    uint32_t weight; /* 1 + timer overruns: periods this sample stands for */
    uint32_t flags;  /* PGOF__SLOT_* */
    /* The word at the interrupted stack pointer: the return address of a
     * leaf that set up no frame (or of a function interrupted in its
     * prologue), or anything else; the consumer decides (profile.c). */
    uintptr_t sp_word;
    uintptr_t pc[PGOF__MAX_DEPTH]; /* leaf first */
} pgof__slot;

typedef struct pgof__ring {
    _Atomic uint64_t head;    /* next position a producer claims */
    uint64_t tail;            /* next position the consumer reads */
    _Atomic uint64_t dropped; /* samples lost because the ring was full */
    size_t mask;              /* nslots - 1, nslots a power of two */
    pgof__slot *slots;
} pgof__ring;

/* Sets up a ring over caller-provided memory of nslots (a power of two). */
void pgof__ring_init(pgof__ring *r, pgof__slot *slots, size_t nslots);

/*
 * Async-signal-safe: claims a slot and returns it for the caller to fill,
 * or NULL (and counts a drop) when the ring is full. The caller must then
 * call pgof__ring_publish(r, slot).
 */
pgof__slot *pgof__ring_claim(pgof__ring *r, uint64_t *pos);
void pgof__ring_publish(pgof__ring *r, pgof__slot *s, uint64_t pos);

/* Consumer only: the next published slot or NULL; release it after use. */
pgof__slot *pgof__ring_peek(pgof__ring *r);
/* Consumer only: the slot i places after the next one (i = 0 is what
 * pgof__ring_peek returns) when it is published, else NULL. Call it with
 * i = 0, 1, 2... and stop at the first NULL; release the slots in order. */
pgof__slot *pgof__ring_peek_nth(pgof__ring *r, size_t i);
void pgof__ring_release(pgof__ring *r, pgof__slot *s);

/* ---- sampler (sampler.c) -------------------------------------------------- */

/*
 * Installs the SIGPROF handler and starts ITIMER_PROF at hz. Refuses with
 * PGOF_EBUSY when another handler or a running ITIMER_PROF is found. One
 * sampler at a time: the caller (pgof.c) serialises start/stop.
 */
int pgof__sampler_start(int hz, pgof_error *err);

/* Whether the sampler could start now (PGOF_EBUSY when another SIGPROF
 * handler or ITIMER_PROF is in use, PGOF_ENOTSUP on an unknown CPU).
 * Reads S.running without the token: a hint, start checks again. */
int pgof__sampler_check(pgof_error *err);

/*
 * Stops the timer, discards a pending SIGPROF, restores the previous
 * handler and timer and waits until no handler is still running.
 */
void pgof__sampler_stop(void);

/* The ring the handler writes to (valid after the first start). */
pgof__ring *pgof__sampler_ring(void);

/* Re-reads the writable mappings the unwinder trusts (stacks of threads
 * started since the window began) and gives threads started since then
 * their CPU timer. Consumer thread only, while running. */
void pgof__sampler_refresh(void);

/* In a fork child: forget the sampler without touching the parent's
 * state (timers are not inherited; the handler is restored). */
void pgof__sampler_atfork_child(void);

/* ---- profile (profile.c) -------------------------------------------------- */

typedef struct pgof__agg pgof__agg;

pgof__agg *pgof__agg_new(void);
void pgof__agg_free(pgof__agg *a);

/* Moves every published slot of the ring into a. Returns 0 or PGOF_ENOMEM
 * (the slots are consumed either way; failures count as lost samples). */
int pgof__agg_drain(pgof__agg *a, pgof__ring *r);

/*
 * Builds the gzip-compressed pprof CPU profile of everything in a: period
 * period_ns, time_nanos the window's start (wall clock), lost the samples
 * the ring dropped. *out is owned (free()).
 */
int pgof__agg_encode(pgof__agg *a, int64_t period_ns, int64_t time_nanos,
                     int64_t duration_nanos, uint64_t lost, uint8_t **out,
                     size_t *len, pgof_error *err);

/* ---- symbols (symbols.c) ------------------------------------------------- */

typedef struct pgof__symtab pgof__symtab;

/* One mapping of a loaded object's executable segment. */
typedef struct pgof__mapping {
    uintptr_t start, limit, offset;
    const char *file;     /* borrowed from the symtab */
    const char *build_id; /* lowercase hex, "" when none */
} pgof__mapping;

/* One frame of a symbolized address, innermost first. */
typedef struct pgof__frame {
    const char *function; /* borrowed from the symtab, never NULL */
    const char *file;     /* "" when unknown */
    int line, start_line;
} pgof__frame;

/* Snapshot of the loaded objects. Returns owned, or NULL (out of memory). */
pgof__symtab *pgof__symtab_new(void);
void pgof__symtab_free(pgof__symtab *t);

size_t pgof__symtab_nmappings(const pgof__symtab *t);
const pgof__mapping *pgof__symtab_mapping(const pgof__symtab *t, size_t i);

/* The index of the mapping holding pc, or -1. */
long pgof__symtab_find(const pgof__symtab *t, uintptr_t pc);

/* The start address of the function holding pc, or 0 when unknown. */
uintptr_t pgof__symtab_func_start(pgof__symtab *t, uintptr_t pc);

/*
 * Symbolizes pc into at most max frames (inlined frames first), returning
 * how many (0 when nothing is known). Strings live as long as the symtab.
 */
size_t pgof__symtab_lookup(pgof__symtab *t, uintptr_t pc, pgof__frame *frames,
                           size_t max);

/* What the code just before a candidate return address is (x86-64). */
#define PGOF__CALL_DIRECT 1u   /* E8 rel32; target is the callee's address */
#define PGOF__CALL_INDIRECT 2u /* FF /2: call through a register or memory */

typedef struct pgof__callsite {
    uintptr_t ret;    /* in: the candidate return address */
    uintptr_t target; /* out: the E8 call's target when kind has DIRECT */
    unsigned kind;    /* out: PGOF__CALL_* bits, 0 when no call ends at ret */
} pgof__callsite;

/*
 * Consumer thread: for each of the n candidates, whether ret lies in an
 * executable segment of a loaded object and a call instruction ends just
 * before it. Reads code bytes only inside the loaded objects' executable
 * PT_LOAD segments, and only inside a dl_iterate_phdr callback, so an
 * object cannot be unloaded while its bytes are read. Always sets kind 0
 * on other architectures.
 */
void pgof__check_callsites(pgof__callsite *c, size_t n);

/* ---- endpoints (endpoint.c) ---------------------------------------------- */

void pgof__endpoint_ref(pgof_endpoint *ep);

/* Off the host's threads: delivers one profile. Returns 0 or PGOF_ESUBMIT
 * with the reason in err. */
int pgof__endpoint_submit(pgof_endpoint *ep, const uint8_t *data, size_t len,
                          pgof_error *err);

#endif /* PGOF_INTERNAL_H */
