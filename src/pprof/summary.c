/*
 * summary.c: a read-only summary of one decoded profile, for `pgof inspect`
 * (added by the pgof command's author; see the "summary" section at the end
 * of pprof.h).
 *
 * DESIGN
 * One pass over the samples of a resolved profile (see internal.h: sample
 * location entries are location indices, line function fields are function
 * indices) computes what a person asks first about a profile: its types,
 * period, duration, how many samples and distinct stacks it holds, and which
 * functions cost the most. Flat and cumulative figures follow `go tool pprof
 * -top` at its default granularity (functions): frames are grouped by
 * function name, inlined frames count as their own functions, the leaf
 * frame (line 0 of the first location) gets the flat value, and every
 * distinct name on a stack gets the cumulative value once per sample, so
 * recursion is not counted twice. Locations without line information are
 * grouped under one "(unknown)" entry.
 *
 * Memory: two open-addressing tables (names, stacks) sized from the profile,
 * plus the result; all through the engine's allocator. The result owns
 * copies of every string it exposes, so it outlives the profile.
 * Threads: reentrant; reads p only.
 */
#include <stdlib.h>
#include <string.h>

#include "pprof/internal.h"

#define UNKNOWN_NAME "(unknown)"

typedef struct group {
    const char *name; /* points into the profile's string bytes */
    uint32_t len;
    int64_t flat, cum;
    size_t last_sample; /* sample that last added to cum, + 1 */
} group;

typedef struct names {
    group *g;          /* groups in order of first appearance */
    size_t n;
    uint32_t *slots;   /* open addressing: group index + 1, 0 = empty */
    size_t mask;
    uint32_t *of_func; /* function index -> group index */
} names;

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* Finds or adds the group for name; returns its index. Never fails: the
 * table holds at least twice as many slots as possible names. */
static uint32_t name_group(names *t, const char *s, uint32_t len)
{
    size_t i = (size_t)pprof__hash_bytes(s, len, 0) & t->mask;
    for (; t->slots[i]; i = (i + 1) & t->mask) {
        group *g = &t->g[t->slots[i] - 1];
        if (g->len == len && memcmp(g->name, s, len) == 0)
            return t->slots[i] - 1;
    }
    t->g[t->n].name = s;
    t->g[t->n].len = len;
    t->slots[i] = (uint32_t)++t->n;
    return (uint32_t)(t->n - 1);
}

static char *dup_str(const char *s, size_t len)
{
    char *d = pprof__malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static char *dup_pstr(const pprof_profile *p, int64_t i)
{
    uint32_t len;
    const char *s = pprof__str(p, i, &len);
    return dup_str(s, len);
}

static int by_cost(const void *a, const void *b)
{
    const pprof_summary_func *x = a, *y = b;
    if (x->flat != y->flat)
        return x->flat > y->flat ? -1 : 1;
    if (x->cum != y->cum)
        return x->cum > y->cum ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Counts distinct location sequences among the samples. */
static int count_stacks(const pprof_profile *p, uint64_t *out)
{
    size_t ns = p->samples.n, mask = pow2_at_least(ns * 2) - 1, n = 0;
    const pprof__sample *s = p->samples.p;
    const uint64_t *ids = p->locids.p;
    uint32_t *slots = pprof__calloc(mask + 1, sizeof(uint32_t));
    uint64_t *hashes = pprof__malloc((ns ? ns : 1) * sizeof(uint64_t));

    if (!slots || !hashes) {
        pprof__free(slots);
        pprof__free(hashes);
        return PPROF_ENOMEM;
    }
    for (size_t k = 0; k < ns; k++) {
        const uint64_t *seq = ids + s[k].loc_off;
        uint64_t h = pprof__hash_bytes(seq, s[k].nloc * sizeof(uint64_t), 1);
        size_t i = (size_t)h & mask;
        int dup = 0;
        hashes[k] = h;
        for (; slots[i]; i = (i + 1) & mask) {
            size_t o = slots[i] - 1;
            if (hashes[o] == h && s[o].nloc == s[k].nloc &&
                memcmp(ids + s[o].loc_off, seq, s[k].nloc * sizeof(uint64_t)) == 0) {
                dup = 1;
                break;
            }
        }
        if (!dup) {
            slots[i] = (uint32_t)(k + 1);
            n++;
        }
    }
    pprof__free(slots);
    pprof__free(hashes);
    *out = n;
    return 0;
}

int pprof_summarize(const pprof_profile *p, pprof_summary **out, pprof_error *err)
{
    const pprof__sample *samples = p->samples.p;
    const pprof__location *locs = p->locations.p;
    const pprof__line *lines = p->lines.p;
    const pprof__function *funcs = p->functions.p;
    const int64_t *values = p->values.p;
    const uint64_t *ids = p->locids.p;
    size_t nfunc = p->functions.n, ntypes = p->sample_types.n, vi, nout = 0;
    names t;
    pprof_summary *s;
    uint32_t unknown;
    int rc;

    *out = NULL;
    if (!p->resolved)
        return pprof__fail(err, PPROF_EINVALID, "profile was not validated");
    memset(&t, 0, sizeof(t));
    s = pprof__calloc(1, sizeof(*s));
    if (!s)
        return pprof__fail(err, PPROF_ENOMEM, "out of memory summarising the profile");

    /* Scalars and table sizes. */
    s->period = p->period;
    s->time_nanos = p->time_nanos;
    s->duration_nanos = p->duration_nanos;
    s->samples = p->samples.n;
    s->locations = p->locations.n;
    s->functions = nfunc;
    s->mappings = p->mappings.n;
    s->strings = p->strings.n;
    s->inflated = p->inflated;
    s->period_type = dup_pstr(p, p->has_period_type ? p->period_type.type : 0);
    s->period_unit = dup_pstr(p, p->has_period_type ? p->period_type.unit : 0);
    s->types = pprof__calloc(ntypes ? ntypes : 1, sizeof(*s->types));
    if (!s->period_type || !s->period_unit || !s->types)
        goto nomem;
    s->ntypes = ntypes;
    for (size_t i = 0; i < ntypes; i++) {
        const pprof__valuetype *vt = &PPROF__AT(p->sample_types, pprof__valuetype, i);
        s->types[i].type = dup_pstr(p, vt->type);
        s->types[i].unit = dup_pstr(p, vt->unit);
        if (!s->types[i].type || !s->types[i].unit)
            goto nomem;
    }
    /* The value flat/cum use: default_sample_type if it names a type, else
     * the last one (pprof's rule). */
    vi = ntypes ? ntypes - 1 : 0;
    if (p->default_sample_type)
        for (size_t i = 0; i < ntypes; i++)
            if (PPROF__AT(p->sample_types, pprof__valuetype, i).type == p->default_sample_type)
                vi = i;
    s->value_index = vi;

    rc = count_stacks(p, &s->stacks);
    if (rc != 0)
        goto nomem;

    /* Name groups: one per distinct function name, plus "(unknown)". */
    t.mask = pow2_at_least((nfunc + 1) * 2) - 1;
    t.g = pprof__calloc(nfunc + 1, sizeof(group));
    t.slots = pprof__calloc(t.mask + 1, sizeof(uint32_t));
    t.of_func = pprof__malloc((nfunc ? nfunc : 1) * sizeof(uint32_t));
    if (!t.g || !t.slots || !t.of_func)
        goto nomem;
    for (size_t f = 0; f < nfunc; f++) {
        uint32_t len;
        const char *name = pprof__str(p, funcs[f].name, &len);
        t.of_func[f] = name_group(&t, name, len);
    }
    unknown = name_group(&t, UNKNOWN_NAME, (uint32_t)strlen(UNKNOWN_NAME));

    s->totals = pprof__calloc(ntypes ? ntypes : 1, sizeof(int64_t));
    if (!s->totals)
        goto nomem;
    for (size_t k = 0; k < p->samples.n; k++) {
        const pprof__sample *sm = &samples[k];
        int64_t v = ntypes ? values[sm->val_off + vi] : 0;
        for (size_t i = 0; i < sm->nval && i < ntypes; i++)
            s->totals[i] += values[sm->val_off + i];
        for (uint32_t j = 0; j < sm->nloc; j++) {
            const pprof__location *l = &locs[ids[sm->loc_off + j]];
            if (l->nline == 0) {
                group *g = &t.g[unknown];
                if (j == 0)
                    g->flat += v;
                if (g->last_sample != k + 1) {
                    g->cum += v;
                    g->last_sample = k + 1;
                }
                continue;
            }
            for (uint32_t q = 0; q < l->nline; q++) {
                group *g = &t.g[t.of_func[lines[l->line_off + q].function]];
                if (j == 0 && q == 0)
                    g->flat += v;
                if (g->last_sample != k + 1) {
                    g->cum += v;
                    g->last_sample = k + 1;
                }
            }
        }
    }

    /* Functions that cost anything, most expensive first. */
    s->funcs = pprof__calloc(t.n ? t.n : 1, sizeof(*s->funcs));
    if (!s->funcs)
        goto nomem;
    for (size_t i = 0; i < t.n; i++) {
        if (t.g[i].flat == 0 && t.g[i].cum == 0)
            continue;
        s->funcs[nout].name = dup_str(t.g[i].name, t.g[i].len);
        if (!s->funcs[nout].name)
            goto nomem;
        s->funcs[nout].flat = t.g[i].flat;
        s->funcs[nout].cum = t.g[i].cum;
        s->nfuncs = ++nout;
    }
    qsort(s->funcs, s->nfuncs, sizeof(*s->funcs), by_cost);

    pprof__free(t.g);
    pprof__free(t.slots);
    pprof__free(t.of_func);
    *out = s;
    return 0;

nomem:
    pprof__free(t.g);
    pprof__free(t.slots);
    pprof__free(t.of_func);
    pprof_summary_free(s);
    return pprof__fail(err, PPROF_ENOMEM, "out of memory summarising the profile");
}

void pprof_summary_free(pprof_summary *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ntypes; i++) {
        pprof__free(s->types[i].type);
        pprof__free(s->types[i].unit);
    }
    for (size_t i = 0; i < s->nfuncs; i++)
        pprof__free(s->funcs[i].name);
    pprof__free(s->types);
    pprof__free(s->totals);
    pprof__free(s->funcs);
    pprof__free(s->period_type);
    pprof__free(s->period_unit);
    pprof__free(s);
}
