/*
 * profile.c: the consumer side of the sampler: aggregates the stacks the
 * SIGPROF handler captured and turns them into a pprof CPU profile.
 *
 * DESIGN
 * Runs on libpgof's background thread (or the pgof_profile_once caller).
 * While a window lasts, pgof__agg_drain moves published ring slots into a
 * hash table of distinct stacks (open addressing over entry indices; the
 * program counters of all stacks share one pool), so memory grows with the
 * number of distinct stacks, never with time. On x86-64 the handler also
 * keeps the word at the interrupted stack pointer; drain keeps it with the
 * stack only when a call instruction in loaded code ends just before it
 * (pgof__check_callsites), so plain data words do not multiply the stacks,
 * and encode makes it frame 1 (the caller that a frameless leaf's walk
 * skips) when that call is indirect or targets the leaf's function. At the
 * end, pgof__agg_encode symbolizes each distinct address once (symbols.c),
 * builds the profile with the engine's builder (src/pprof/builder.c: one
 * mapping per loaded executable segment, one location per address, the
 * stacks as samples with values count and count * period), and sends it
 * through a pprof_merger so the output is deduplicated, validated and gzip-encoded by the same code
 * the collector uses. Samples the ring had to drop appear as one sample on
 * a frame named "pgof_lost_samples", so total CPU stays honest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded/internal.h"
#include "pprof/pprof.h"

typedef struct stack_ent {
    uint64_t hash;
    size_t off;     /* into pcs */
    uint32_t depth;
    uint64_t count;
    /* A call site's return address found at the leaf's stack pointer (0
     * when none) and, for a direct call, its target: the caller the walk
     * missed, decided at encode time once the leaf's function is known. */
    uintptr_t ret, target;
} stack_ent;

struct pgof__agg {
    stack_ent *ents;
    size_t nents, capents;
    uint32_t *slots; /* entry index + 1, 0 empty */
    size_t capslots; /* power of two */
    uintptr_t *pcs;
    size_t npcs, cappcs;
    uint64_t failed; /* samples lost to allocation failure */
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

pgof__agg *pgof__agg_new(void)
{
    return calloc(1, sizeof(pgof__agg));
}

void pgof__agg_free(pgof__agg *a)
{
    if (!a)
        return;
    free(a->ents);
    free(a->slots);
    free(a->pcs);
    free(a);
}

static bool grow_slots(pgof__agg *a)
{
    size_t cap = a->capslots ? a->capslots * 2 : 1024, i;
    uint32_t *s = calloc(cap, sizeof(*s));

    if (!s)
        return false;
    for (i = 0; i < a->nents; i++) {
        size_t j = a->ents[i].hash & (cap - 1);
        while (s[j])
            j = (j + 1) & (cap - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(a->slots);
    a->slots = s;
    a->capslots = cap;
    return true;
}

static bool reserve(void **p, size_t *cap, size_t need, size_t size)
{
    size_t c = *cap ? *cap : 256;
    void *n;

    if (need <= *cap)
        return true;
    while (c < need)
        c *= 2;
    if (!(n = realloc(*p, c * size)))
        return false;
    *p = n;
    *cap = c;
    return true;
}

/* Counts one sample of stack pcs[0..depth) with its call site (ret,
 * target; both 0 when none). */
static int add_stack(pgof__agg *a, const uintptr_t *pcs, uint32_t depth, uintptr_t ret,
                     uintptr_t target, uint32_t weight)
{
    uint64_t h = mix(mix(mix(0, depth), ret), target);
    size_t j, k;

    for (k = 0; k < depth; k++)
        h = mix(h, pcs[k]);
    if ((a->nents + 1) * 2 > a->capslots && !grow_slots(a))
        return PGOF_ENOMEM;
    for (j = h & (a->capslots - 1); a->slots[j]; j = (j + 1) & (a->capslots - 1)) {
        stack_ent *e = &a->ents[a->slots[j] - 1];
        if (e->hash == h && e->depth == depth && e->ret == ret && e->target == target &&
            memcmp(a->pcs + e->off, pcs, depth * sizeof(*pcs)) == 0) {
            e->count += weight;
            return 0;
        }
    }
    if (!reserve((void **)&a->ents, &a->capents, a->nents + 1, sizeof(stack_ent)) ||
        !reserve((void **)&a->pcs, &a->cappcs, a->npcs + depth, sizeof(uintptr_t)))
        return PGOF_ENOMEM;
    memcpy(a->pcs + a->npcs, pcs, depth * sizeof(*pcs));
    a->ents[a->nents] = (stack_ent){h, a->npcs, depth, weight, ret, target};
    a->npcs += depth;
    a->slots[j] = (uint32_t)++a->nents;
    return 0;
}

/* Slots taken from the ring at a time: their call sites are checked in
 * one pass over the loaded objects. */
#define DRAIN_BATCH 64

int pgof__agg_drain(pgof__agg *a, pgof__ring *r)
{
    pgof__slot *batch[DRAIN_BATCH];
    pgof__callsite cs[DRAIN_BATCH];
    size_t n, ncs, i;
    int rc = 0;

    for (;;) {
        for (n = 0; n < DRAIN_BATCH && (batch[n] = pgof__ring_peek_nth(r, n)); n++)
            ;
        if (n == 0)
            break;
        /* A word at the stack pointer is a candidate only when it is not a
         * saved frame pointer; pgof__check_callsites keeps those that a
         * call instruction in loaded code precedes. */
        for (i = ncs = 0; i < n; i++)
            if ((batch[i]->flags & (PGOF__SLOT_SP_WORD | PGOF__SLOT_SP_IS_FP)) ==
                    PGOF__SLOT_SP_WORD &&
                batch[i]->sp_word >= 4096)
                cs[ncs++].ret = batch[i]->sp_word;
        pgof__check_callsites(cs, ncs);
        for (i = ncs = 0; i < n; i++) {
            pgof__slot *s = batch[i];
            uint32_t depth = s->depth > PGOF__MAX_DEPTH ? PGOF__MAX_DEPTH : s->depth;
            uint32_t weight = s->weight ? s->weight : 1;
            uintptr_t ret = 0, target = 0;
            if ((s->flags & (PGOF__SLOT_SP_WORD | PGOF__SLOT_SP_IS_FP)) == PGOF__SLOT_SP_WORD &&
                s->sp_word >= 4096) {
                const pgof__callsite *c = &cs[ncs++];
                /* Already the next frame: a framed function interrupted
                 * where its return address is at the stack pointer. */
                if (c->kind && depth >= 1 && !(depth >= 2 && s->pc[1] == c->ret - 1)) {
                    ret = c->ret;
                    /* An indirect call cannot be checked against the leaf;
                     * a direct one is checked at encode time. */
                    target = (c->kind & PGOF__CALL_INDIRECT) ? 0 : c->target;
                }
            }
            if (add_stack(a, s->pc, depth, ret, target, weight)) {
                a->failed += weight;
                rc = PGOF_ENOMEM;
            }
            pgof__ring_release(r, s);
        }
    }
    return rc;
}

/* ---- encoding ------------------------------------------------------------- */

typedef struct loc_map { /* pc -> location id, open addressing */
    uintptr_t *keys;
    uint64_t *ids;
    size_t cap;
} loc_map;

#define MAX_INLINE 16

/* The location id of pc, adding the location on first sight. */
static int location_of(pprof_builder *b, pgof__symtab *t, loc_map *lm,
                       const uint64_t *map_ids, uintptr_t pc, uint64_t *id,
                       pprof_error *perr)
{
    pgof__frame fr[MAX_INLINE];
    pprof_builder_line lines[MAX_INLINE];
    size_t j = (size_t)mix(0, pc) & (lm->cap - 1), n, k;
    long mi;
    int rc;

    while (lm->ids[j]) {
        if (lm->keys[j] == pc) {
            *id = lm->ids[j];
            return 0;
        }
        j = (j + 1) & (lm->cap - 1);
    }
    n = pgof__symtab_lookup(t, pc, fr, MAX_INLINE);
    for (k = 0; k < n; k++) {
        lines[k].function = fr[k].function;
        lines[k].system_name = fr[k].function;
        lines[k].file = fr[k].file;
        lines[k].start_line = fr[k].start_line;
        lines[k].line = fr[k].line;
    }
    mi = pgof__symtab_find(t, pc);
    if ((rc = pprof_builder_add_location(b, mi >= 0 ? map_ids[mi] : 0, pc, lines, n, id,
                                         perr)))
        return rc;
    lm->keys[j] = pc;
    lm->ids[j] = *id;
    return 0;
}

/*
 * Whether e's call site is the caller of its leaf pc that the frame walk
 * missed (see sampler.c): an indirect call, or a direct call whose target
 * is the start of the leaf's function (any direct call when that start is
 * unknown). pcs[1] was checked to differ at drain time.
 */
static bool caller_missed(pgof__symtab *t, const stack_ent *e, uintptr_t leaf)
{
    uintptr_t start;

    if (!e->ret)
        return false;
    if (!e->target)
        return true;
    start = pgof__symtab_func_start(t, leaf);
    return start == 0 || start == e->target;
}

int pgof__agg_encode(pgof__agg *a, int64_t period_ns, int64_t time_nanos,
                     int64_t duration_nanos, uint64_t lost, uint8_t **out,
                     size_t *len, pgof_error *err)
{
    pgof__symtab *t = NULL;
    pprof_builder *b = NULL;
    pprof_profile *p = NULL;
    pprof_merger *m = NULL;
    pprof_error perr = {0, ""};
    uint64_t *map_ids = NULL, locs[PGOF__MAX_DEPTH + 1];
    loc_map lm = {NULL, NULL, 0};
    size_t i, k, nmaps;
    char comment[160];
    int rc = PGOF_ENOMEM;

    *out = NULL;
    *len = 0;
    lost += a->failed;
    if (!(t = pgof__symtab_new()) ||
        !(b = pprof_builder_new_cpu(period_ns, time_nanos, duration_nanos)))
        goto nomem;
    nmaps = pgof__symtab_nmappings(t);
    if (!(map_ids = calloc(nmaps + 1, sizeof(*map_ids))))
        goto nomem;
    for (i = 0; i < nmaps; i++) {
        const pgof__mapping *mp = pgof__symtab_mapping(t, i);
        if (pprof_builder_add_mapping(b, mp->start, mp->limit, mp->offset, mp->file,
                                      mp->build_id, &map_ids[i], &perr))
            goto engine;
    }
    lm.cap = 1024;
    while (lm.cap < 2 * a->npcs + 2)
        lm.cap *= 2;
    if (!(lm.keys = calloc(lm.cap, sizeof(*lm.keys))) ||
        !(lm.ids = calloc(lm.cap, sizeof(*lm.ids))))
        goto nomem;
    for (i = 0; i < a->nents; i++) {
        const stack_ent *e = &a->ents[i];
        const uintptr_t *pcs = a->pcs + e->off;
        size_t depth = 0;
        for (k = 0; k < e->depth; k++) {
            if (location_of(b, t, &lm, map_ids, pcs[k], &locs[depth++], &perr))
                goto engine;
            if (k == 0 && caller_missed(t, e, pcs[0]) &&
                location_of(b, t, &lm, map_ids, e->ret - 1, &locs[depth++], &perr))
                goto engine;
        }
        if (pprof_builder_add_sample(b, locs, depth, (int64_t)e->count,
                                     (int64_t)e->count * period_ns, &perr))
            goto engine;
    }
    if (lost) {
        pprof_builder_line ln = {"pgof_lost_samples", NULL, "", 0, 0};
        if (pprof_builder_add_location(b, 0, 0, &ln, 1, &locs[0], &perr) ||
            pprof_builder_add_sample(b, locs, 1, (int64_t)lost, (int64_t)lost * period_ns,
                                     &perr))
            goto engine;
    }
    snprintf(comment, sizeof(comment), "libpgof %d.%d.%d: %zu distinct stacks, %llu lost samples",
             PGOF_VERSION_MAJOR, PGOF_VERSION_MINOR, PGOF_VERSION_PATCH, a->nents,
             (unsigned long long)lost);
    if (pprof_builder_add_comment(b, comment, &perr) || pprof_builder_finish(b, &p, &perr))
        goto engine;
    if (!(m = pprof_merger_new()))
        goto nomem;
    if (pprof_merger_add(m, p, &perr) || pprof_merger_encode(m, out, len, &perr))
        goto engine;
    rc = 0;
    goto cleanup;
engine:
    rc = pgof__fail(err, perr.code == PPROF_ENOMEM ? PGOF_ENOMEM : PGOF_EPROFILE,
                    "building the profile failed: %s", perr.msg);
    goto cleanup;
nomem:
    rc = pgof__fail(err, PGOF_ENOMEM, "out of memory building the profile");
cleanup:
    free(lm.keys);
    free(lm.ids);
    free(map_ids);
    pprof_merger_free(m);
    pprof_profile_free(p);
    pprof_builder_free(b);
    pgof__symtab_free(t);
    return rc;
}
