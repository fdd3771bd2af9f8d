/*
 * ring.c: the bounded lock-free ring between the SIGPROF handler and the
 * consumer (libpgof's background thread).
 *
 * DESIGN
 * Dmitry Vyukov's bounded queue, restricted to one consumer: every slot
 * carries a sequence number. A slot at position pos is free for a producer
 * when seq == pos and readable by the consumer when seq == pos + 1; the
 * consumer frees it for the next lap with seq = pos + nslots. Producers
 * claim positions with a compare-and-swap on head, so several threads'
 * handlers may write at once; a handler never waits: when the slot at head
 * is not free (the ring is full) it counts a drop and returns.
 *
 * Signal safety: producers use only lock-free atomics on 64-bit integers
 * (C11 <stdatomic.h>; on x86-64 and aarch64 these compile to plain
 * instructions, never to a lock) and plain stores into preallocated memory.
 * A handler cannot interrupt another producer on its own thread because
 * SIGPROF is blocked while its handler runs (no SA_NODEFER).
 *
 * A producer that was preempted between claim and publish makes the
 * consumer stop at its slot until it publishes; nothing is lost.
 */
#include "embedded/internal.h"

void pgof__ring_init(pgof__ring *r, pgof__slot *slots, size_t nslots)
{
    size_t i;

    atomic_store(&r->head, 0);
    r->tail = 0;
    atomic_store(&r->dropped, 0);
    r->mask = nslots - 1;
    r->slots = slots;
    for (i = 0; i < nslots; i++)
        atomic_store_explicit(&slots[i].seq, i, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

pgof__slot *pgof__ring_claim(pgof__ring *r, uint64_t *out_pos)
{
    uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);

    for (;;) {
        pgof__slot *s = &r->slots[pos & r->mask];
        uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (seq == pos) {
            if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *out_pos = pos;
                return s;
            }
            /* pos was reloaded by the failed exchange; try again. */
        } else if (seq < pos) {
            atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
            return NULL;
        } else {
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
        }
    }
}

void pgof__ring_publish(pgof__ring *r, pgof__slot *s, uint64_t pos)
{
    (void)r;
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
}

pgof__slot *pgof__ring_peek(pgof__ring *r)
{
    pgof__slot *s = &r->slots[r->tail & r->mask];

    if (atomic_load_explicit(&s->seq, memory_order_acquire) != r->tail + 1)
        return NULL;
    return s;
}

pgof__slot *pgof__ring_peek_nth(pgof__ring *r, size_t i)
{
    pgof__slot *s = &r->slots[(r->tail + i) & r->mask];

    if (i > r->mask || atomic_load_explicit(&s->seq, memory_order_acquire) != r->tail + i + 1)
        return NULL;
    return s;
}

void pgof__ring_release(pgof__ring *r, pgof__slot *s)
{
    atomic_store_explicit(&s->seq, r->tail + r->mask + 1, memory_order_release);
    r->tail++;
}
