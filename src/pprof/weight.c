/*
 * weight.c: scaling one profile so that it contributes a chosen total to a
 * merge (weight=equal).
 *
 * DESIGN
 * weight=equal makes every input count the same before the sum: each
 * profile is scaled by target / S, where S is its total of the weight
 * value (see pprof_weight_index) and target is the same for every input
 * (the callers use the largest S of the set, so no profile is scaled down
 * and no non-zero sample can round to zero).
 *
 * Rounding is the largest-remainder method, per sample type: every value
 * v becomes floor(v * target / S), then the values with the largest
 * remainders (ties: the earlier sample) get one more, until the column sums
 * to its exact target: target itself for the weight value, and
 * round-half-up(T_j * target / S) for every other type j with total T_j. So
 * after scaling every input contributes exactly `target` to the weight
 * value's total, and each value is within 1 of its exact share. Products
 * are computed in 128 bits, so nothing overflows before the division.
 *
 * Values must be non-negative (CPU profiles are); a profile with a negative
 * value is refused rather than scaled into nonsense. A profile whose S is 0
 * is left unchanged: it has nothing to weigh.
 *
 * Threads: touches only the profile it is given.
 */
#include <stdlib.h>
#include <string.h>

#include "pprof/internal.h"

typedef unsigned __int128 u128;

size_t pprof_weight_index(const pprof_profile *p)
{
    size_t i;

    for (i = 0; i < p->sample_types.n; i++) {
        const pprof__valuetype *t = &PPROF__AT(p->sample_types, pprof__valuetype, i);
        if ((pprof__str_eq(p, t->type, "samples") && pprof__str_eq(p, t->unit, "count")) ||
            (pprof__str_eq(p, t->type, "cpu") && pprof__str_eq(p, t->unit, "nanoseconds")))
            return i;
    }
    return p->sample_types.n ? p->sample_types.n - 1 : 0;
}

/* Sum of column k; false when a value is negative or the sum passes 2^63. */
static bool column_total(const pprof_profile *p, size_t k, u128 *out)
{
    u128 sum = 0;
    size_t i;

    for (i = 0; i < p->samples.n; i++) {
        const pprof__sample *s = &PPROF__AT(p->samples, pprof__sample, i);
        int64_t v;
        if (k >= s->nval)
            continue;
        v = PPROF__AT(p->values, int64_t, s->val_off + k);
        if (v < 0)
            return false;
        sum += (uint64_t)v;
    }
    *out = sum;
    return sum <= (u128)INT64_MAX;
}

int pprof_profile_total(const pprof_profile *p, int64_t *total, pprof_error *err)
{
    size_t k = pprof_weight_index(p);
    u128 sum;

    *total = 0;
    if (p->sample_types.n == 0)
        return 0;
    if (!column_total(p, k, &sum))
        return pprof__fail(err, PPROF_EINVALID, "cannot weigh the profile: a value is negative "
                                                "or the total passes 2^63");
    *total = (int64_t)sum;
    return 0;
}

typedef struct rem {
    uint64_t rem; /* v * target mod S */
    uint32_t sample;
} rem;

static int rem_cmp(const void *a, const void *b)
{
    const rem *x = a, *y = b;

    if (x->rem != y->rem)
        return x->rem > y->rem ? -1 : 1;
    return x->sample < y->sample ? -1 : x->sample > y->sample;
}

int pprof_profile_scale(pprof_profile *p, int64_t target, pprof_error *err)
{
    size_t widx = pprof_weight_index(p), k, i;
    u128 s_total = 0, t = (u128)(uint64_t)target;
    rem *rems = NULL;
    int rc = 0;

    if (target < 0)
        return pprof__fail(err, PPROF_EINVALID, "a weight target must not be negative");
    if (!p->resolved)
        return pprof__fail(err, PPROF_EINVALID, "the profile was not validated");
    if (p->sample_types.n == 0 || p->samples.n == 0)
        return 0;
    for (k = 0; k < p->sample_types.n; k++) {
        u128 sum;
        if (!column_total(p, k, &sum))
            return pprof__fail(err, PPROF_EINVALID,
                               "cannot weigh the profile: a value is negative or a total "
                               "passes 2^63");
        if (k == widx)
            s_total = sum;
    }
    if (s_total == 0)
        return 0;
    rems = pprof__malloc(p->samples.n * sizeof(*rems));
    if (!rems)
        return pprof__fail(err, PPROF_ENOMEM, "out of memory weighing a profile");
    for (k = 0; k < p->sample_types.n; k++) {
        u128 col = 0, want, got = 0;
        size_t n = 0;
        for (i = 0; i < p->samples.n; i++) {
            const pprof__sample *s = &PPROF__AT(p->samples, pprof__sample, i);
            if (k < s->nval)
                col += (uint64_t)PPROF__AT(p->values, int64_t, s->val_off + k);
        }
        /* The column's exact target, rounded half up. */
        want = k == widx ? t : (col * t + s_total / 2) / s_total;
        if (want > (u128)INT64_MAX) {
            rc = pprof__fail(err, PPROF_EINVALID,
                             "weighing the profile would make a total pass 2^63");
            goto out;
        }
        for (i = 0; i < p->samples.n; i++) {
            const pprof__sample *s = &PPROF__AT(p->samples, pprof__sample, i);
            int64_t *v;
            u128 q;
            if (k >= s->nval)
                continue;
            v = &PPROF__AT(p->values, int64_t, s->val_off + k);
            q = (u128)(uint64_t)*v * t;
            *v = (int64_t)(q / s_total);
            got += (uint64_t)*v;
            rems[n].rem = (uint64_t)(q % s_total);
            rems[n].sample = (uint32_t)i;
            n++;
        }
        /* got <= want < got + n: hand out the difference by remainder. */
        if (want > got) {
            size_t extra = (size_t)(want - got);
            qsort(rems, n, sizeof(*rems), rem_cmp);
            for (i = 0; i < extra && i < n; i++) {
                const pprof__sample *s = &PPROF__AT(p->samples, pprof__sample, rems[i].sample);
                PPROF__AT(p->values, int64_t, s->val_off + k) += 1;
            }
        }
    }
out:
    pprof__free(rems);
    return rc;
}
