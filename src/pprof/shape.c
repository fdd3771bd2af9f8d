/*
 * shape.c: derived aggregates: the same merge without sample labels
 * (strip_labels) or reduced to what Go's PGO reads (shape=pgo).
 *
 * DESIGN
 * pprof_merger_reshape turns an aggregate m into a second, smaller one. It
 * writes m's tables, transformed, into an ordinary resolved pprof_profile
 * (the flat tables of internal.h, ids = index + 1, indices already
 * resolved) and adds that to a fresh merger. The fresh merger does the rest:
 * it deduplicates the functions, locations and samples the transformation
 * made equal and sums their values, exactly as it would for a decoded
 * profile, and the ordinary encoder writes it. So a reshaped aggregate obeys
 * every rule of a merged one, and there is no second encoder to keep in step.
 *
 * PPROF_RESHAPE_STRIP_LABELS copies every table but sample labels; samples
 * of one stack then merge. Because merging is a sum keyed by (stack,
 * labels), stripping after the merge equals merging label-free profiles.
 *
 * PPROF_RESHAPE_PGO keeps what Go's compiler reads (docs/pprof.md, "shape=pgo",
 * has the argument that the compiler's edge table does not change):
 *   - each sample's two innermost locations (Go 1.21+ builds call edges
 *     from those only), with their lines (function name, function start
 *     line, line: inlined frames included, in order);
 *   - addresses replaced by 1 for the leaf location and 2 for its caller,
 *     or 1 for both when the two had the same address: the compiler's graph
 *     tells nodes apart by (name, start line, line, address), and only
 *     within one sample does that address matter, so this keeps exactly the
 *     equalities the compiler sees;
 *   - both values (samples/count, which the compiler reads, and
 *     cpu/nanoseconds, so totals still match), period, time and duration;
 * and drops labels, mappings, file and system names, comments, drop/keep
 * frames and every frame beyond the second.
 *
 * Memory: one profile-sized copy of m's tables while the new merger is
 * built. Threads: reads m only; the caller serialises calls on m.
 */
#include <string.h>

#include "pprof/internal.h"

/* Appends one zeroed element to v (budget of p); returns it or NULL. */
static void *push(pprof_profile *p, pprof__vec *v, size_t size)
{
    void *e;

    if (pprof__vec_grow(v, size, 1, &p->budget) != 0)
        return NULL;
    e = (char *)v->p + v->n * size;
    memset(e, 0, size);
    v->n++;
    return e;
}

/* Copies m's strings (same ids) into p. */
static int copy_strings(pprof_profile *p, const pprof_merger *m)
{
    size_t i;

    if (m->str_bytes.n > UINT32_MAX)
        return PPROF_ELIMIT;
    if (pprof__vec_grow(&p->strbytes, 1, m->str_bytes.n, &p->budget) ||
        pprof__vec_grow(&p->strings, sizeof(pprof__strref), m->strings.n, &p->budget))
        return PPROF_ENOMEM;
    if (m->str_bytes.n)
        memcpy(p->strbytes.p, m->str_bytes.p, m->str_bytes.n);
    p->strbytes.n = m->str_bytes.n;
    for (i = 0; i < m->strings.n; i++) {
        const pprof__mstr *s = &PPROF__AT(m->strings, pprof__mstr, i);
        pprof__strref *r = &PPROF__AT(p->strings, pprof__strref, i);
        r->off = (uint32_t)s->off;
        r->len = s->len;
    }
    p->strings.n = m->strings.n;
    return 0;
}

static int copy_header(pprof_profile *p, const pprof_merger *m, bool pgo)
{
    size_t i;

    for (i = 0; i + 1 < m->sample_types.n; i += 2) {
        pprof__valuetype *t = push(p, &p->sample_types, sizeof(*t));
        if (!t)
            return PPROF_ENOMEM;
        t->type = PPROF__AT(m->sample_types, uint32_t, i);
        t->unit = PPROF__AT(m->sample_types, uint32_t, i + 1);
    }
    p->period_type.type = m->period_type;
    p->period_type.unit = m->period_unit;
    p->has_period_type = true;
    p->period = m->period;
    p->time_nanos = m->time_nanos;
    p->duration_nanos = m->duration_nanos;
    p->default_sample_type = m->default_sample_type;
    if (pgo)
        return 0;
    p->drop_frames = m->drop_frames;
    p->keep_frames = m->keep_frames;
    for (i = 0; i < m->comments.n; i++) {
        int64_t *c = push(p, &p->comments, sizeof(*c));
        if (!c)
            return PPROF_ENOMEM;
        *c = PPROF__AT(m->comments, uint32_t, i);
    }
    return 0;
}

static int copy_functions(pprof_profile *p, const pprof_merger *m, bool pgo)
{
    size_t i;

    for (i = 0; i < m->functions.n; i++) {
        const pprof__mfunc *mf = &PPROF__AT(m->functions, pprof__mfunc, i);
        pprof__function *f = push(p, &p->functions, sizeof(*f));
        if (!f)
            return PPROF_ENOMEM;
        f->id = i + 1;
        f->name = mf->name;
        f->start_line = mf->start_line;
        if (!pgo) {
            f->system_name = mf->system_name;
            f->filename = mf->filename;
        }
    }
    return 0;
}

static int copy_mappings(pprof_profile *p, const pprof_merger *m)
{
    size_t i;

    for (i = 0; i < m->mappings.n; i++) {
        const pprof__mmap *mm = &PPROF__AT(m->mappings, pprof__mmap, i);
        pprof__mapping *d = push(p, &p->mappings, sizeof(*d));
        if (!d)
            return PPROF_ENOMEM;
        d->id = i + 1;
        d->start = mm->start;
        d->limit = mm->limit;
        d->offset = mm->offset;
        d->filename = mm->filename;
        d->build_id = mm->build_id;
        d->flags = mm->flags;
    }
    return 0;
}

/* Adds location li of m to p with the given mapping/address (and, with
 * zero_leaf, line 0 for its innermost frame); its index out. */
static int add_location(pprof_profile *p, const pprof_merger *m, uint32_t li, bool keep_mapping,
                        uint64_t address, bool zero_leaf, uint32_t *out)
{
    const pprof__mloc *ml = &PPROF__AT(m->locations, pprof__mloc, li);
    pprof__location *l;
    uint32_t j;

    if (p->lines.n + ml->nline > UINT32_MAX || p->locations.n >= UINT32_MAX - 1)
        return PPROF_ELIMIT;
    if (pprof__vec_grow(&p->lines, sizeof(pprof__line), ml->nline, &p->budget))
        return PPROF_ENOMEM;
    l = push(p, &p->locations, sizeof(*l));
    if (!l)
        return PPROF_ENOMEM;
    l->id = p->locations.n;
    l->address = address;
    l->mapping = PPROF__NONE;
    if (keep_mapping) {
        l->is_folded = ml->is_folded;
        if (ml->mapping != PPROF__NONE) {
            l->mapping = ml->mapping;
            l->mapping_id = (uint64_t)ml->mapping + 1;
        }
    }
    l->line_off = (uint32_t)p->lines.n;
    l->nline = ml->nline;
    for (j = 0; j < ml->nline; j++) {
        const pprof__mline *src = &PPROF__AT(m->mlines, pprof__mline, ml->line_off + j);
        pprof__line *d = &PPROF__AT(p->lines, pprof__line, p->lines.n++);
        memset(d, 0, sizeof(*d));
        d->function = src->function;
        d->function_id = (uint64_t)src->function + 1;
        d->line = zero_leaf && j == 0 ? 0 : src->line;
    }
    *out = (uint32_t)(p->locations.n - 1);
    return 0;
}

static bool is_live(const pprof_merger *m, size_t si)
{
    size_t nst = m->sample_types.n / 2, j;
    const int64_t *v = PPROF__SLICE(m->values, const int64_t, si * nst);

    for (j = 0; j < nst; j++)
        if (v[j])
            return true;
    return false;
}

/* Adds sample si of m to p with the given location indices (leaf first). */
static int add_sample(pprof_profile *p, const pprof_merger *m, size_t si, const uint32_t *locs,
                      uint32_t nloc, bool labels)
{
    const pprof__msample *ms = &PPROF__AT(m->samples, pprof__msample, si);
    size_t nst = m->sample_types.n / 2, j;
    uint32_t nlab = labels ? ms->nlabel : 0;
    pprof__sample *s;

    if (p->locids.n + nloc > UINT32_MAX || p->values.n + nst > UINT32_MAX ||
        p->labels.n + nlab > UINT32_MAX)
        return PPROF_ELIMIT;
    if (pprof__vec_grow(&p->locids, sizeof(uint64_t), nloc, &p->budget) ||
        pprof__vec_grow(&p->values, sizeof(int64_t), nst, &p->budget) ||
        pprof__vec_grow(&p->labels, sizeof(pprof__label), nlab, &p->budget))
        return PPROF_ENOMEM;
    s = push(p, &p->samples, sizeof(*s));
    if (!s)
        return PPROF_ENOMEM;
    s->loc_off = (uint32_t)p->locids.n;
    s->nloc = nloc;
    for (j = 0; j < nloc; j++)
        PPROF__AT(p->locids, uint64_t, p->locids.n++) = locs[j];
    s->val_off = (uint32_t)p->values.n;
    s->nval = (uint32_t)nst;
    for (j = 0; j < nst; j++)
        PPROF__AT(p->values, int64_t, p->values.n++) =
            PPROF__AT(m->values, int64_t, si * nst + j);
    s->label_off = (uint32_t)p->labels.n;
    s->nlabel = nlab;
    for (j = 0; j < nlab; j++) {
        const pprof__mlabel *ml = &PPROF__AT(m->mlabels, pprof__mlabel, ms->label_off + j);
        pprof__label *l = &PPROF__AT(p->labels, pprof__label, p->labels.n++);
        memset(l, 0, sizeof(*l));
        l->key = ml->key;
        if (ml->kind == PPROF__LABEL_STR) {
            l->str = ml->str;
        } else {
            l->num = ml->num;
            l->num_unit = ml->unit;
        }
    }
    return 0;
}

/* Every table of m but the labels, when strip is set. */
static int build_copy(pprof_profile *p, const pprof_merger *m, bool labels)
{
    size_t i;
    uint32_t li;
    int rc;

    if ((rc = copy_mappings(p, m)))
        return rc;
    for (li = 0; li < m->locations.n; li++) {
        uint32_t idx;
        if ((rc = add_location(p, m, li, true, PPROF__AT(m->locations, pprof__mloc, li).address,
                               false, &idx)))
            return rc;
    }
    for (i = 0; i < m->samples.n; i++) {
        const pprof__msample *ms = &PPROF__AT(m->samples, pprof__msample, i);
        if (!is_live(m, i))
            continue;
        if ((rc = add_sample(p, m, i, PPROF__SLICE(m->stacks, const uint32_t, ms->stack_off),
                             ms->nloc, labels)))
            return rc;
    }
    return 0;
}

/* Whether location li has a frame of function name `name` (a string id),
 * from frame `from` on. */
static bool has_name(const pprof_merger *m, uint32_t li, uint32_t from, uint32_t name)
{
    const pprof__mloc *l = &PPROF__AT(m->locations, pprof__mloc, li);
    uint32_t j;

    for (j = from; j < l->nline; j++) {
        const pprof__mline *ln = &PPROF__AT(m->mlines, pprof__mline, l->line_off + j);
        if (PPROF__AT(m->functions, pprof__mfunc, ln->function).name == name)
            return true;
    }
    return false;
}

/*
 * Whether the leaf's innermost line may become 0: the compiler reads a
 * line only from callers (the call site), and the innermost frame of the
 * leaf calls nothing. Its line only tells its node apart from the other
 * nodes of the same sample, which have the same address; so it may go
 * unless another frame of the same name shares that address.
 */
static bool leaf_line_free(const pprof_merger *m, const uint32_t *stack, uint32_t n,
                           bool same_address)
{
    const pprof__mloc *leaf = &PPROF__AT(m->locations, pprof__mloc, stack[0]);
    uint32_t name;

    if (leaf->nline == 0)
        return false;
    name = PPROF__AT(m->functions, pprof__mfunc,
                     PPROF__AT(m->mlines, pprof__mline, leaf->line_off).function)
               .name;
    if (has_name(m, stack[0], 1, name))
        return false;
    return !(n == 2 && same_address && has_name(m, stack[1], 0, name));
}

/* The PGO shape: two innermost locations per sample, synthetic addresses,
 * the leaf's innermost line dropped where that changes no node equality. */
static int build_pgo(pprof_profile *p, const pprof_merger *m)
{
    /* memo[3 * li + v]: the shaped location for (m location, variant),
     * created on first use. Variants: 0 address 1, 1 address 1 with the
     * innermost line 0 (leaves), 2 address 2 (callers). */
    uint32_t *memo = NULL;
    size_t i;
    int rc = 0;

    if (m->locations.n > (SIZE_MAX / sizeof(uint32_t)) / 3 - 1)
        return PPROF_ENOMEM;
    memo = pprof__malloc(3 * m->locations.n * sizeof(uint32_t) + 1);
    if (!memo)
        return PPROF_ENOMEM;
    memset(memo, 0xff, 3 * m->locations.n * sizeof(uint32_t));
    for (i = 0; i < m->samples.n && !rc; i++) {
        const pprof__msample *ms = &PPROF__AT(m->samples, pprof__msample, i);
        const uint32_t *stack = PPROF__SLICE(m->stacks, const uint32_t, ms->stack_off);
        uint32_t locs[2], n = ms->nloc < 2 ? ms->nloc : 2, j;
        bool same;

        if (!is_live(m, i))
            continue;
        /* The caller shares the leaf's address when the two addresses were
         * equal, so the compiler's node equality is unchanged. */
        same = n == 2 && PPROF__AT(m->locations, pprof__mloc, stack[1]).address ==
                             PPROF__AT(m->locations, pprof__mloc, stack[0]).address;
        for (j = 0; j < n && !rc; j++) {
            uint32_t li = stack[j], v;
            if (j == 0)
                v = leaf_line_free(m, stack, n, same) ? 1 : 0;
            else
                v = same ? 0 : 2;
            if (memo[3 * (size_t)li + v] == PPROF__NONE)
                rc = add_location(p, m, li, false, v == 2 ? 2 : 1, v == 1,
                                  &memo[3 * (size_t)li + v]);
            locs[j] = memo[3 * (size_t)li + v];
        }
        if (!rc)
            rc = add_sample(p, m, i, locs, n, false);
    }
    pprof__free(memo);
    return rc;
}

int pprof_merger_reshape(const pprof_merger *m, unsigned flags, pprof_merger **out,
                         pprof_error *err)
{
    bool pgo = (flags & PPROF_RESHAPE_PGO) != 0;
    bool labels = !pgo && !(flags & PPROF_RESHAPE_STRIP_LABELS);
    pprof_profile *p = NULL;
    pprof_merger *r = NULL;
    int rc;

    *out = NULL;
    if (!m->has_header)
        return pprof__fail(err, PPROF_EEMPTY, "no profile was added to the aggregate");
    p = pprof__calloc(1, sizeof(*p));
    r = pprof_merger_new();
    if (!p || !r) {
        rc = PPROF_ENOMEM;
        goto fail;
    }
    if ((rc = copy_strings(p, m)) || (rc = copy_header(p, m, pgo)) ||
        (rc = copy_functions(p, m, pgo)))
        goto fail;
    rc = pgo ? build_pgo(p, m) : build_copy(p, m, labels);
    if (rc)
        goto fail;
    p->resolved = true;
    if ((rc = pprof_merger_add(r, p, err)))
        goto fail_msg;
    pprof_profile_free(p);
    *out = r;
    return 0;
fail:
    if (rc == PPROF_ELIMIT)
        pprof__fail(err, rc, "a reshaped table passed 2^32 entries");
    else
        pprof__fail(err, rc, "out of memory reshaping the aggregate");
fail_msg:
    pprof_profile_free(p);
    pprof_merger_free(r);
    return rc;
}
