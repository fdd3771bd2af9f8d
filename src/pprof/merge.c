/*
 * merge.c: the running aggregate of many profiles (google/pprof's
 * profile.Merge, made incremental).
 *
 * DESIGN
 * The merger hash-conses everything it is given: strings are interned into
 * one table (ids, with 0 = ""), and functions, mappings, locations and
 * samples are kept once each, keyed exactly as pprof's merge.go keys them:
 *   - function: name, system name, file name, start line;
 *   - mapping: size rounded up to 4 KiB, file offset, and build id (or file
 *     name when the build id is empty); a later profile's addresses in that
 *     mapping are shifted by the difference of the mapping starts;
 *   - location: merged mapping, address relative to the mapping start,
 *     is_folded, and its lines (merged function, line number);
 *   - sample: its stack of merged locations plus its labels. pprof compares
 *     labels as maps from key to an ordered list of values; we reach the same
 *     equality by sorting a sample's labels by (kind, key) with the original
 *     position as tie-break, so values of one key keep their order.
 * Memory therefore grows with distinct strings, functions, locations and
 * stacks, never with the number of profiles added.
 *
 * pprof_merger_add is all-or-nothing. Phase 1 maps the profile's samples to
 * merged samples, creating new entries (new samples get zero values); it is
 * the only phase that allocates. Phase 2 adds the values and folds the
 * header in and cannot fail. When phase 1 fails (out of memory, a table past
 * 2^32 entries) every table is truncated back to its size before the call
 * and the hash tables are rebuilt in place, so the merger is exactly as it
 * was. Incompatible profiles are refused before anything changes.
 *
 * Per-profile maps from a source index to a merged index (strings,
 * functions, mappings, locations) are scratch arrays owned by the merger and
 * reused across calls. Values are added with unsigned wrap-around, as Go's
 * int64 addition does. Threads: a merger is used by one thread at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/quote.h"
#include "pprof/internal.h"

/* ---- hash table ----------------------------------------------------------- */

static inline size_t ht_pos(uint32_t hash, size_t cap)
{
    return (size_t)hash & (cap - 1);
}

/* Inserts without checking for an equal entry; the table has room. */
static void ht_put(pprof__htab *h, uint32_t hash, uint32_t idx)
{
    size_t i;

    for (i = ht_pos(hash, h->cap); h->slots[i]; i = (i + 1) & (h->cap - 1))
        ;
    h->slots[i] = ((uint64_t)hash << 32) | ((uint64_t)idx + 1);
    h->n++;
}

/* Re-inserts entries 0..n-1 of a table whose entries start with their hash. */
static void ht_rebuild(pprof__htab *h, const pprof__vec *entries, size_t stride,
                       size_t n)
{
    size_t i;

    memset(h->slots, 0, h->cap * sizeof(uint64_t));
    h->n = 0;
    for (i = 0; i < n; i++)
        ht_put(h, *(const uint32_t *)((const char *)entries->p + i * stride), (uint32_t)i);
}

/* Makes room for one more entry (load at most 1/2). */
static int ht_reserve(pprof__htab *h, pprof__budget *b)
{
    size_t ncap, i;
    uint64_t *old = h->slots, *ns;
    size_t ocap = h->cap;

    if ((h->n + 1) * 2 <= h->cap)
        return 0;
    ncap = h->cap ? h->cap * 2 : 64;
    ns = pprof__calloc(ncap, sizeof(uint64_t));
    if (!ns)
        return PPROF_ENOMEM;
    h->slots = ns;
    h->cap = ncap;
    h->n = 0;
    for (i = 0; i < ocap; i++)
        if (old[i])
            ht_put(h, (uint32_t)(old[i] >> 32), (uint32_t)(old[i] & 0xffffffffu) - 1);
    pprof__free(old);
    b->used += (ncap - ocap) * sizeof(uint64_t);
    return 0;
}

/*
 * The probe loop every lookup shares: for each slot with the same hash, EQ
 * (an expression over `idx`) decides. Leaves the found index in *found (or
 * PPROF__NONE).
 */
#define HT_FIND(h, hash, EQ, found)                                           \
    do {                                                                      \
        size_t i_ = (h)->cap ? ht_pos((hash), (h)->cap) : 0;                  \
        *(found) = PPROF__NONE;                                               \
        if (!(h)->cap)                                                        \
            break;                                                            \
        for (; (h)->slots[i_]; i_ = (i_ + 1) & ((h)->cap - 1)) {              \
            uint64_t s_ = (h)->slots[i_];                                     \
            uint32_t idx = (uint32_t)(s_ & 0xffffffffu) - 1;                  \
            if ((uint32_t)(s_ >> 32) == (hash) && (EQ)) {                      \
                *(found) = idx;                                               \
                break;                                                        \
            }                                                                 \
        }                                                                     \
    } while (0)

/* ---- growth helpers ---------------------------------------------------- */

static int grow(pprof_merger *m, pprof__vec *v, size_t size, size_t more)
{
    int rc = pprof__vec_grow(v, size, more, &m->budget);

    if (rc == 0 && v->n + more > UINT32_MAX - 1)
        rc = PPROF_ELIMIT;
    return rc;
}

/* ---- strings --------------------------------------------------------------- */

static int intern(pprof_merger *m, const char *s, uint32_t len, uint32_t *out)
{
    uint32_t hash = (uint32_t)pprof__hash_bytes(s, len, 0x5eed);
    const pprof__mstr *tab = m->strings.p;
    const char *bytes = m->str_bytes.p ? m->str_bytes.p : "";
    pprof__mstr *e;
    uint32_t found;
    int rc;

    HT_FIND(&m->str_ht, hash,
            tab[idx].len == len && memcmp(bytes + tab[idx].off, s, len) == 0, &found);
    if (found != PPROF__NONE) {
        *out = found;
        return 0;
    }
    if ((rc = ht_reserve(&m->str_ht, &m->budget)) ||
        (rc = grow(m, &m->strings, sizeof(pprof__mstr), 1)) ||
        (rc = grow(m, &m->str_flags, 1, 1)) ||
        (rc = pprof__vec_grow(&m->str_bytes, 1, len, &m->budget)))
        return rc;
    e = &PPROF__AT(m->strings, pprof__mstr, m->strings.n);
    e->hash = hash;
    e->len = len;
    e->off = m->str_bytes.n;
    if (len)
        memcpy((char *)m->str_bytes.p + m->str_bytes.n, s, len);
    m->str_bytes.n += len;
    PPROF__AT(m->str_flags, uint8_t, m->str_flags.n++) = 0;
    ht_put(&m->str_ht, hash, (uint32_t)m->strings.n);
    *out = (uint32_t)m->strings.n++;
    return 0;
}

/* Maps string index i of the profile being added to a merged id (memoised). */
static int map_str(pprof_merger *m, const pprof_profile *p, int64_t i, uint32_t *out)
{
    uint32_t *memo = m->s_str.p;
    uint32_t len;
    const char *s;
    int rc;

    if (i == 0) {
        *out = 0;
        return 0;
    }
    if (memo[i] != PPROF__NONE) {
        *out = memo[i];
        return 0;
    }
    s = pprof__str(p, i, &len);
    if ((rc = intern(m, s, len, out)))
        return rc;
    memo[i] = *out;
    return 0;
}

/* ---- functions, mappings, locations ------------------------------------------ */

/* Finds or adds function k (hash computed here). */
static int intern_function(pprof_merger *m, pprof__mfunc *k, uint32_t *out)
{
    const pprof__mfunc *tab = m->functions.p;
    uint32_t found;
    int rc;

    k->hash = (uint32_t)pprof__hash_mix(
        pprof__hash_mix(pprof__hash_mix(k->name, k->system_name), k->filename),
        (uint64_t)k->start_line);
    HT_FIND(&m->func_ht, k->hash,
            tab[idx].name == k->name && tab[idx].system_name == k->system_name &&
                tab[idx].filename == k->filename && tab[idx].start_line == k->start_line,
            &found);
    if (found == PPROF__NONE) {
        if ((rc = ht_reserve(&m->func_ht, &m->budget)) ||
            (rc = grow(m, &m->functions, sizeof(*k), 1)))
            return rc;
        found = (uint32_t)m->functions.n;
        PPROF__AT(m->functions, pprof__mfunc, m->functions.n++) = *k;
        ht_put(&m->func_ht, k->hash, found);
    }
    *out = found;
    return 0;
}

static int map_function(pprof_merger *m, const pprof_profile *p, uint32_t fi,
                        uint32_t *out)
{
    uint32_t *memo = m->s_func.p;
    const pprof__function *f = &PPROF__AT(p->functions, pprof__function, fi);
    pprof__mfunc k;
    uint32_t found;
    int rc;

    if (memo[fi] != PPROF__NONE) {
        *out = memo[fi];
        return 0;
    }
    memset(&k, 0, sizeof(k));
    if ((rc = map_str(m, p, f->name, &k.name)) ||
        (rc = map_str(m, p, f->system_name, &k.system_name)) ||
        (rc = map_str(m, p, f->filename, &k.filename)))
        return rc;
    k.start_line = f->start_line;
    if ((rc = intern_function(m, &k, &found)))
        return rc;
    memo[fi] = found;
    *out = found;
    return 0;
}

static int map_mapping(pprof_merger *m, const pprof_profile *p, uint32_t mi,
                       uint32_t *out)
{
    uint32_t *memo = m->s_map.p;
    int64_t *offs = m->s_mapoff.p;
    const pprof__mapping *src = &PPROF__AT(p->mappings, pprof__mapping, mi);
    const pprof__mmap *tab;
    pprof__mmap k;
    uint32_t found;
    int rc;

    if (memo[mi] != PPROF__NONE) {
        *out = memo[mi];
        return 0;
    }
    memset(&k, 0, sizeof(k));
    if ((rc = map_str(m, p, src->filename, &k.filename)) ||
        (rc = map_str(m, p, src->build_id, &k.build_id)))
        return rc;
    /* merge.go Mapping.key: size rounded up to 4 KiB, with Go's wrap-around. */
    k.key_size = src->limit - src->start;
    k.key_size = k.key_size + 0xfff;
    k.key_size -= k.key_size % 0x1000;
    k.key_str = k.build_id ? k.build_id : k.filename;
    /* A non-zero id can still name "": compare content like Go does. */
    if (k.build_id && PPROF__AT(m->strings, pprof__mstr, k.build_id).len == 0)
        k.key_str = k.filename;
    if (k.key_str && PPROF__AT(m->strings, pprof__mstr, k.key_str).len == 0)
        k.key_str = 0;
    k.start = src->start;
    k.limit = src->limit;
    k.offset = src->offset;
    k.flags = src->flags;
    k.hash = (uint32_t)pprof__hash_mix(pprof__hash_mix(k.key_size, src->offset), k.key_str);
    tab = m->mappings.p;
    HT_FIND(&m->map_ht, k.hash,
            tab[idx].key_size == k.key_size && tab[idx].offset == k.offset &&
                tab[idx].key_str == k.key_str,
            &found);
    if (found == PPROF__NONE) {
        if ((rc = ht_reserve(&m->map_ht, &m->budget)) ||
            (rc = grow(m, &m->mappings, sizeof(k), 1)))
            return rc;
        found = (uint32_t)m->mappings.n;
        PPROF__AT(m->mappings, pprof__mmap, m->mappings.n++) = k;
        ht_put(&m->map_ht, k.hash, found);
        offs[mi] = 0;
    } else {
        offs[mi] = (int64_t)(tab[found].start - src->start);
    }
    memo[mi] = found;
    *out = found;
    return 0;
}

/*
 * Finds or adds location k (mapping, address, key_addr, is_folded, nline
 * set by the caller) with its k->nline lines; the hash is computed here.
 */
static int intern_location(pprof_merger *m, pprof__mloc *k, const pprof__mline *lines,
                           uint32_t *out)
{
    const pprof__mloc *tab = m->locations.p;
    const pprof__mline *mlines = m->mlines.p;
    uint64_t h = pprof__hash_mix(pprof__hash_mix(k->mapping, k->key_addr), k->is_folded);
    uint32_t found, j;
    int rc;

    for (j = 0; j < k->nline; j++)
        h = pprof__hash_mix(pprof__hash_mix(h, lines[j].function), (uint64_t)lines[j].line);
    k->hash = (uint32_t)h;
    HT_FIND(&m->loc_ht, k->hash,
            tab[idx].mapping == k->mapping && tab[idx].key_addr == k->key_addr &&
                tab[idx].is_folded == k->is_folded && tab[idx].nline == k->nline &&
                (k->nline == 0 ||
                 memcmp(mlines + tab[idx].line_off, lines, k->nline * sizeof(*lines)) == 0),
            &found);
    if (found == PPROF__NONE) {
        if ((rc = ht_reserve(&m->loc_ht, &m->budget)) ||
            (rc = grow(m, &m->locations, sizeof(*k), 1)) ||
            (rc = grow(m, &m->mlines, sizeof(*lines), k->nline)))
            return rc;
        k->line_off = (uint32_t)m->mlines.n;
        if (k->nline)
            memcpy(PPROF__SLICE(m->mlines, pprof__mline, m->mlines.n), lines,
                   k->nline * sizeof(*lines));
        m->mlines.n += k->nline;
        found = (uint32_t)m->locations.n;
        PPROF__AT(m->locations, pprof__mloc, m->locations.n++) = *k;
        ht_put(&m->loc_ht, k->hash, found);
    }
    *out = found;
    return 0;
}

static int map_location(pprof_merger *m, const pprof_profile *p, uint32_t li,
                        uint32_t *out)
{
    uint32_t *memo = m->s_loc.p;
    const pprof__location *src = &PPROF__AT(p->locations, pprof__location, li);
    const pprof__line *sl = PPROF__SLICE(p->lines, const pprof__line, src->line_off);
    pprof__mline *lines;
    pprof__mloc k;
    uint32_t found, j;
    int rc;

    if (memo[li] != PPROF__NONE) {
        *out = memo[li];
        return 0;
    }
    memset(&k, 0, sizeof(k));
    k.mapping = PPROF__NONE;
    k.address = src->address;
    if (src->mapping != PPROF__NONE) {
        if ((rc = map_mapping(m, p, src->mapping, &k.mapping)))
            return rc;
        k.address = src->address + (uint64_t)PPROF__AT(m->s_mapoff, int64_t, src->mapping);
        k.key_addr = k.address - PPROF__AT(m->mappings, pprof__mmap, k.mapping).start;
    } else {
        k.key_addr = k.address;
    }
    k.is_folded = src->is_folded;
    m->s_lines.n = 0;
    if ((rc = pprof__vec_grow(&m->s_lines, sizeof(pprof__mline), src->nline, &m->budget)))
        return rc;
    lines = m->s_lines.p;
    for (j = 0; j < src->nline; j++) {
        memset(&lines[j], 0, sizeof(lines[j]));
        if ((rc = map_function(m, p, sl[j].function, &lines[j].function)))
            return rc;
        lines[j].line = sl[j].line;
    }
    k.nline = src->nline;
    if ((rc = intern_location(m, &k, lines, &found)))
        return rc;
    memo[li] = found;
    *out = found;
    return 0;
}

/* ---- samples ------------------------------------------------------------------ */

typedef struct lab_sort {
    pprof__mlabel l;
    uint32_t pos;
} lab_sort;

static int lab_cmp(const void *a, const void *b)
{
    const lab_sort *x = a, *y = b;

    if (x->l.kind != y->l.kind)
        return x->l.kind < y->l.kind ? -1 : 1;
    if (x->l.key != y->l.key)
        return x->l.key < y->l.key ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Canonical labels of sample s into m->s_lab (as pprof__mlabel). */
static int map_labels(pprof_merger *m, const pprof_profile *p, const pprof__sample *s)
{
    const pprof__label *src = PPROF__SLICE(p->labels, const pprof__label, s->label_off);
    lab_sort *ls;
    pprof__mlabel *out;
    uint32_t j, n = 0;
    int rc;

    m->s_lab.n = 0;
    if (s->nlabel == 0)
        return 0;
    if ((rc = pprof__vec_grow(&m->s_lab, sizeof(lab_sort), s->nlabel, &m->budget)))
        return rc;
    ls = m->s_lab.p;
    for (j = 0; j < s->nlabel; j++) {
        pprof__mlabel *l = &ls[n].l;
        memset(&ls[n], 0, sizeof(ls[n]));
        /* postDecode: a string label when str != 0, else a numeric one when
         * num or unit is set, else the label is dropped. */
        if (src[j].str != 0) {
            l->kind = PPROF__LABEL_STR;
            if ((rc = map_str(m, p, src[j].str, &l->str)))
                return rc;
        } else if (src[j].num != 0 || src[j].num_unit != 0) {
            l->kind = PPROF__LABEL_NUM;
            l->num = src[j].num;
            if ((rc = map_str(m, p, src[j].num_unit, &l->unit)))
                return rc;
        } else {
            continue;
        }
        if ((rc = map_str(m, p, src[j].key, &l->key)))
            return rc;
        ls[n].pos = j;
        n++;
    }
    qsort(ls, n, sizeof(*ls), lab_cmp);
    /* Compact to plain labels in place (lab_sort starts with the label). */
    out = (pprof__mlabel *)ls;
    for (j = 0; j < n; j++)
        memmove(&out[j], &ls[j].l, sizeof(*out));
    m->s_lab.n = n;
    return 0;
}

static bool is_zero_sample(const pprof_profile *p, const pprof__sample *s)
{
    const int64_t *v = PPROF__SLICE(p->values, const int64_t, s->val_off);
    uint32_t j;

    for (j = 0; j < s->nval; j++)
        if (v[j])
            return false;
    return true;
}

/* Finds or adds the sample (stack, labels); new samples get zero values. */
static int intern_sample(pprof_merger *m, const uint32_t *stack, uint32_t nloc,
                         const pprof__mlabel *lab, uint32_t nlabel, uint32_t *out)
{
    const pprof__msample *tab = m->samples.p;
    const uint32_t *stacks = m->stacks.p;
    const pprof__mlabel *mlabels = m->mlabels.p;
    size_t nst = m->sample_types.n / 2;
    uint64_t h = 0x1234;
    pprof__msample k;
    uint32_t found, j;
    int rc;

    /* Two location ids per round: half the serial multiply chain. */
    for (j = 0; j + 1 < nloc; j += 2)
        h = pprof__hash_mix(h, (uint64_t)stack[j] | (uint64_t)stack[j + 1] << 32);
    if (j < nloc)
        h = pprof__hash_mix(h, stack[j]);
    for (j = 0; j < nlabel; j++)
        h = pprof__hash_bytes(&lab[j], sizeof(*lab), h);
    memset(&k, 0, sizeof(k));
    k.hash = (uint32_t)h;
    k.nloc = nloc;
    k.nlabel = nlabel;
    HT_FIND(&m->smp_ht, k.hash,
            tab[idx].nloc == k.nloc && tab[idx].nlabel == k.nlabel &&
                (k.nloc == 0 ||
                 memcmp(stacks + tab[idx].stack_off, stack, k.nloc * sizeof(*stack)) == 0) &&
                (k.nlabel == 0 ||
                 memcmp(mlabels + tab[idx].label_off, lab, k.nlabel * sizeof(*lab)) == 0),
            &found);
    if (found == PPROF__NONE) {
        if ((rc = ht_reserve(&m->smp_ht, &m->budget)) ||
            (rc = grow(m, &m->samples, sizeof(k), 1)) ||
            (rc = grow(m, &m->stacks, sizeof(uint32_t), k.nloc)) ||
            (rc = grow(m, &m->mlabels, sizeof(*lab), k.nlabel)) ||
            (rc = pprof__vec_grow(&m->values, sizeof(int64_t), nst, &m->budget)))
            return rc;
        k.stack_off = (uint32_t)m->stacks.n;
        if (k.nloc)
            memcpy(PPROF__SLICE(m->stacks, uint32_t, m->stacks.n), stack, k.nloc * sizeof(*stack));
        m->stacks.n += k.nloc;
        k.label_off = (uint32_t)m->mlabels.n;
        if (k.nlabel)
            memcpy(PPROF__SLICE(m->mlabels, pprof__mlabel, m->mlabels.n), lab,
                   k.nlabel * sizeof(*lab));
        m->mlabels.n += k.nlabel;
        if (nst)
            memset(PPROF__SLICE(m->values, int64_t, m->values.n), 0, nst * sizeof(int64_t));
        m->values.n += nst;
        found = (uint32_t)m->samples.n;
        PPROF__AT(m->samples, pprof__msample, m->samples.n++) = k;
        ht_put(&m->smp_ht, k.hash, found);
    }
    *out = found;
    return 0;
}

static int map_sample(pprof_merger *m, const pprof_profile *p, const pprof__sample *s,
                      uint32_t *out)
{
    const uint64_t *locs = PPROF__SLICE(p->locids, const uint64_t, s->loc_off);
    const uint32_t *memo = m->s_loc.p;
    uint32_t *stack, j;
    int rc;

    m->s_stack.n = 0;
    if ((rc = pprof__vec_grow(&m->s_stack, sizeof(uint32_t), s->nloc, &m->budget)))
        return rc;
    stack = m->s_stack.p;
    for (j = 0; j < s->nloc; j++) {
        /* Most frames were mapped by an earlier sample of this profile. */
        uint32_t li = (uint32_t)locs[j];
        if (memo[li] != PPROF__NONE) {
            stack[j] = memo[li];
            continue;
        }
        if ((rc = map_location(m, p, li, &stack[j])))
            return rc;
    }
    if ((rc = map_labels(m, p, s)))
        return rc;
    return intern_sample(m, stack, s->nloc, m->s_lab.p, (uint32_t)m->s_lab.n, out);
}

/* ---- header ------------------------------------------------------------------- */

static bool same_str(const pprof_merger *m, uint32_t id, const pprof_profile *p,
                     int64_t i)
{
    uint32_t la, lb;
    const char *a = pprof__mstr_at(m, id, &la);
    const char *b = pprof__str(p, i, &lb);

    return la == lb && memcmp(a, b, la) == 0;
}

static void describe_types(char *out, size_t outsz, const pprof_profile *p)
{
    const pprof__valuetype *st = p->sample_types.p;
    size_t i, o = 0;

    out[0] = '\0';
    for (i = 0; i < p->sample_types.n && o + 1 < outsz; i++) {
        char t[24], u[24];
        uint32_t tl, ul;
        const char *ts = pprof__str(p, st[i].type, &tl);
        const char *us = pprof__str(p, st[i].unit, &ul);
        int w = snprintf(out + o, outsz - o, "%s%s/%s", i ? " " : "",
                         quote_bytes(t, sizeof(t), ts, tl, 16),
                         quote_bytes(u, sizeof(u), us, ul, 16));
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

static int check_compatible(const pprof_merger *m, const pprof_profile *p,
                            pprof_error *err)
{
    const pprof__valuetype *st = p->sample_types.p;
    const uint32_t *mst = m->sample_types.p;
    char have[96];
    size_t i;

    if (!same_str(m, m->period_type, p, p->period_type.type) ||
        !same_str(m, m->period_unit, p, p->period_type.unit)) {
        char t[24], u[24], t2[24], u2[24];
        uint32_t tl, ul, mtl, mul;
        const char *ts = pprof__str(p, p->period_type.type, &tl);
        const char *us = pprof__str(p, p->period_type.unit, &ul);
        const char *mt = pprof__mstr_at(m, m->period_type, &mtl);
        const char *mu = pprof__mstr_at(m, m->period_unit, &mul);
        return pprof__fail(err, PPROF_EINCOMPAT,
                           "incompatible profiles: period type %s/%s, the aggregate has %s/%s",
                           quote_bytes(t, sizeof(t), ts, tl, 16),
                           quote_bytes(u, sizeof(u), us, ul, 16),
                           quote_bytes(t2, sizeof(t2), mt, mtl, 16),
                           quote_bytes(u2, sizeof(u2), mu, mul, 16));
    }
    if (p->sample_types.n * 2 != m->sample_types.n)
        goto differ;
    for (i = 0; i < p->sample_types.n; i++)
        if (!same_str(m, mst[2 * i], p, st[i].type) ||
            !same_str(m, mst[2 * i + 1], p, st[i].unit))
            goto differ;
    return 0;
differ:
    describe_types(have, sizeof(have), p);
    return pprof__fail(err, PPROF_EINCOMPAT,
                       "incompatible profiles: sample types [%s] differ from the aggregate's",
                       have);
}

/* Interns the first profile's header strings (phase 1: may fail). */
static int map_header(pprof_merger *m, const pprof_profile *p, uint32_t *hdr)
{
    const pprof__valuetype *st = p->sample_types.p;
    size_t i;
    int rc;

    if ((rc = map_str(m, p, p->default_sample_type, &hdr[0])))
        return rc;
    if ((rc = grow(m, &m->comments, sizeof(uint32_t), p->comments.n)))
        return rc;
    for (i = 0; i < p->comments.n; i++)
        if ((rc = map_str(m, p, PPROF__AT(p->comments, int64_t, i), &hdr[1])))
            return rc;
    if (m->has_header)
        return 0;
    if ((rc = map_str(m, p, p->period_type.type, &m->period_type)) ||
        (rc = map_str(m, p, p->period_type.unit, &m->period_unit)) ||
        (rc = map_str(m, p, p->drop_frames, &m->drop_frames)) ||
        (rc = map_str(m, p, p->keep_frames, &m->keep_frames)) ||
        (rc = pprof__vec_grow(&m->sample_types, sizeof(uint32_t), 2 * p->sample_types.n,
                              &m->budget)))
        return rc;
    for (i = 0; i < p->sample_types.n; i++) {
        uint32_t *mst = m->sample_types.p;
        if ((rc = map_str(m, p, st[i].type, &mst[2 * i])) ||
            (rc = map_str(m, p, st[i].unit, &mst[2 * i + 1])))
            return rc;
    }
    m->sample_types.n = 2 * p->sample_types.n;
    return 0;
}

/* Phase 2 header fold: cannot fail (room for comments was reserved). */
static void fold_header(pprof_merger *m, const pprof_profile *p, uint32_t default_type)
{
    size_t i;

    if (m->nprofiles == 0) {
        m->time_nanos = p->time_nanos;
        m->duration_nanos = p->duration_nanos;
        m->period = p->period;
    } else {
        /* Earliest non-zero time, summed duration, largest period. */
        if (m->time_nanos == 0 || (p->time_nanos != 0 && p->time_nanos < m->time_nanos))
            m->time_nanos = p->time_nanos;
        m->duration_nanos = (int64_t)((uint64_t)m->duration_nanos + (uint64_t)p->duration_nanos);
        if (p->period > m->period)
            m->period = p->period;
    }
    if (PPROF__AT(m->strings, pprof__mstr, m->default_sample_type).len == 0)
        m->default_sample_type = default_type;
    for (i = 0; i < p->comments.n; i++) {
        int64_t c = PPROF__AT(p->comments, int64_t, i);
        uint32_t id = c == 0 ? 0 : PPROF__AT(m->s_str, uint32_t, c);
        uint8_t *flag = &PPROF__AT(m->str_flags, uint8_t, id);
        if (*flag)
            continue;
        *flag = 1;
        PPROF__AT(m->comments, uint32_t, m->comments.n++) = id;
    }
    m->has_header = true;
    m->nprofiles++;
}

/* ---- add, rollback --------------------------------------------------------------- */

typedef struct snapshot {
    size_t strings, str_bytes, functions, mappings, locations, mlines, samples,
        stacks, mlabels, values, sample_types, comments, group_version;
} snapshot;

static void take_snapshot(const pprof_merger *m, snapshot *s)
{
    s->strings = m->strings.n;
    s->str_bytes = m->str_bytes.n;
    s->functions = m->functions.n;
    s->mappings = m->mappings.n;
    s->locations = m->locations.n;
    s->mlines = m->mlines.n;
    s->samples = m->samples.n;
    s->stacks = m->stacks.n;
    s->mlabels = m->mlabels.n;
    s->values = m->values.n;
    s->sample_types = m->sample_types.n;
    s->comments = m->comments.n;
    s->group_version = m->group_version.n;
}

/* Did the add since snapshot s add an entry to a table the encoder renumbers? */
static bool tables_grew(const pprof_merger *m, const snapshot *s)
{
    return m->strings.n != s->strings || m->functions.n != s->functions ||
           m->mappings.n != s->mappings || m->locations.n != s->locations ||
           m->samples.n != s->samples || m->comments.n != s->comments ||
           m->sample_types.n != s->sample_types;
}

/* Phase 1: a change stamp for every sample group, new ones 0. */
static int reserve_groups(pprof_merger *m)
{
    size_t want = (m->samples.n + PPROF__SAMPLE_GROUP - 1) / PPROF__SAMPLE_GROUP;
    size_t more = want > m->group_version.n ? want - m->group_version.n : 0;
    int rc;

    if (!more)
        return 0;
    if ((rc = pprof__vec_grow(&m->group_version, sizeof(uint64_t), more, &m->budget)))
        return rc;
    memset(PPROF__SLICE(m->group_version, uint64_t, m->group_version.n), 0,
           more * sizeof(uint64_t));
    m->group_version.n = want;
    return 0;
}

static bool all_zero(const int64_t *v, size_t n)
{
    size_t j;

    for (j = 0; j < n; j++)
        if (v[j])
            return false;
    return true;
}

static void rollback(pprof_merger *m, const snapshot *s)
{
    m->strings.n = s->strings;
    m->str_flags.n = s->strings;
    m->str_bytes.n = s->str_bytes;
    m->functions.n = s->functions;
    m->mappings.n = s->mappings;
    m->locations.n = s->locations;
    m->mlines.n = s->mlines;
    m->samples.n = s->samples;
    m->stacks.n = s->stacks;
    m->mlabels.n = s->mlabels;
    m->values.n = s->values;
    m->sample_types.n = s->sample_types;
    m->group_version.n = s->group_version;
    if (m->str_ht.cap)
        ht_rebuild(&m->str_ht, &m->strings, sizeof(pprof__mstr), m->strings.n);
    if (m->func_ht.cap)
        ht_rebuild(&m->func_ht, &m->functions, sizeof(pprof__mfunc), m->functions.n);
    if (m->map_ht.cap)
        ht_rebuild(&m->map_ht, &m->mappings, sizeof(pprof__mmap), m->mappings.n);
    if (m->loc_ht.cap)
        ht_rebuild(&m->loc_ht, &m->locations, sizeof(pprof__mloc), m->locations.n);
    if (m->smp_ht.cap)
        ht_rebuild(&m->smp_ht, &m->samples, sizeof(pprof__msample), m->samples.n);
}

/* Sizes a scratch array to n entries, every one PPROF__NONE. */
static int scratch(pprof_merger *m, pprof__vec *v, size_t n)
{
    int rc;

    v->n = 0;
    if ((rc = pprof__vec_grow(v, sizeof(uint32_t), n, &m->budget)))
        return rc;
    if (n)
        memset(v->p, 0xff, n * sizeof(uint32_t));
    v->n = n;
    return 0;
}

pprof_merger *pprof_merger_new(void)
{
    static uint64_t last_uid;
    pprof_merger *m = pprof__calloc(1, sizeof(*m));
    uint32_t id;

    if (!m)
        return NULL;
    m->uid = __atomic_add_fetch(&last_uid, 1, __ATOMIC_RELAXED);
    /* String 0 is "" so that id 0 means the empty string everywhere. */
    if (intern(m, "", 0, &id)) {
        pprof_merger_free(m);
        return NULL;
    }
    return m;
}

void pprof_merger_free(pprof_merger *m)
{
    size_t i;

    if (!m)
        return;
    {
        pprof__vec *vecs[] = {
            &m->sample_types, &m->comments, &m->strings, &m->str_bytes, &m->str_flags,
            &m->functions, &m->mappings, &m->locations, &m->mlines, &m->samples,
            &m->stacks, &m->mlabels, &m->values, &m->s_str, &m->s_func, &m->s_map,
            &m->s_mapoff, &m->s_loc, &m->s_smp, &m->s_stack, &m->s_lab, &m->s_lines,
            &m->group_version,
        };
        for (i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
            pprof__vec_free(vecs[i]);
    }
    pprof__free(m->str_ht.slots);
    pprof__free(m->func_ht.slots);
    pprof__free(m->map_ht.slots);
    pprof__free(m->loc_ht.slots);
    pprof__free(m->smp_ht.slots);
    pprof__free(m);
}

int pprof_merger_add(pprof_merger *m, const pprof_profile *p, pprof_error *err)
{
    const pprof__sample *smp = p->samples.p;
    uint32_t *targets, hdr[2] = {0, 0};
    size_t i, j, nst;
    uint64_t version, *stamps;
    bool shape;
    snapshot snap;
    int rc;

    if (!p->resolved)
        return pprof__fail(err, PPROF_EINVALID, "the profile was not validated");
    if (m->has_header && (rc = check_compatible(m, p, err)))
        return rc;
    take_snapshot(m, &snap);
    if ((rc = scratch(m, &m->s_str, p->strings.n)) ||
        (rc = scratch(m, &m->s_func, p->functions.n)) ||
        (rc = scratch(m, &m->s_map, p->mappings.n)) ||
        (rc = scratch(m, &m->s_loc, p->locations.n)) ||
        (rc = scratch(m, &m->s_smp, p->samples.n)) ||
        (rc = pprof__vec_grow(&m->s_mapoff, sizeof(int64_t), p->mappings.n, &m->budget)))
        goto fail;
    if ((rc = map_header(m, p, hdr)))
        goto fail;
    if (m->mappings.n == 0 && p->mappings.n > 0) {
        /* merge.go: the first mapping seen is the main binary; keep it first. */
        uint32_t idx;
        if ((rc = map_mapping(m, p, 0, &idx)))
            goto fail;
    }
    targets = m->s_smp.p;
    for (i = 0; i < p->samples.n; i++) {
        if (is_zero_sample(p, &smp[i]))
            continue;
        if ((rc = map_sample(m, p, &smp[i], &targets[i])))
            goto fail;
    }
    if ((rc = reserve_groups(m)))
        goto fail;

    /* Phase 2: nothing below can fail. */
    nst = m->sample_types.n / 2;
    version = ++m->version;
    shape = false;
    stamps = m->group_version.p;
    for (i = 0; i < p->samples.n; i++) {
        const int64_t *v;
        int64_t *acc;
        bool was_zero;
        if (targets[i] == PPROF__NONE)
            continue;
        v = PPROF__SLICE(p->values, const int64_t, smp[i].val_off);
        acc = PPROF__SLICE(m->values, int64_t, (size_t)targets[i] * nst);
        was_zero = all_zero(acc, nst);
        for (j = 0; j < nst; j++)
            acc[j] = (int64_t)((uint64_t)acc[j] + (uint64_t)v[j]);
        if (was_zero != all_zero(acc, nst))
            shape = true;
        stamps[targets[i] / PPROF__SAMPLE_GROUP] = version;
    }
    {
        uint32_t default_type = m->default_sample_type;
        fold_header(m, p, hdr[0]);
        if (shape || default_type != m->default_sample_type || tables_grew(m, &snap))
            m->shape_version = version;
    }
    return 0;
fail:
    rollback(m, &snap);
    if (rc == PPROF_ELIMIT)
        return pprof__fail(err, rc, "the aggregate passed 2^32 entries in one of its tables");
    return pprof__fail(err, rc, "out of memory merging a profile");
}

uint64_t pprof_merger_profiles(const pprof_merger *m)
{
    return m->nprofiles;
}

uint64_t pprof_merger_samples(const pprof_merger *m)
{
    return m->samples.n;
}
