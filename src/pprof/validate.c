/*
 * validate.c: the structural rules a decoded profile must meet, id
 * resolution, and the CPU-profile rule.
 *
 * DESIGN
 * The rules are google/pprof's (profile.go ParseData -> postDecode ->
 * CheckValid, as vendored in Go 1.19), made explicit:
 *   - the string table is not empty and entry 0 is "" (encode.go decoder);
 *   - every string index used anywhere is in range (postDecode/getString);
 *   - samples exist only with sample types, and every sample has exactly one
 *     value per sample type (CheckValid);
 *   - mapping, function and location ids are non-zero and unique
 *     (CheckValid);
 *   - every sample location id names a location, every line's function id
 *     names a function (CheckValid: "nil location", "nil function").
 * Where we are stricter than pprof (documented in docs/pprof.md):
 *   - a location whose non-zero mapping_id names no mapping is refused
 *     (pprof silently drops the mapping);
 *   - a label must have a non-empty key and must not carry both a string and
 *     a number (proto: "at most one of the following must be present";
 *     pprof keeps the string and ignores the number).
 * The checks run in one pass per table after the whole protobuf is decoded
 * (Go writes samples before the string table) and, as a side effect,
 * replace ids by table indices (see internal.h). Ids are mapped through a
 * direct array when they are dense (Go numbers them 1..n) and through an
 * open-addressing hash table otherwise, so validation is O(size) either way.
 * Threads: reentrant.
 */
#include <stdio.h>
#include <string.h>

#include "common/quote.h"
#include "pprof/internal.h"

/* ---- id -> index map ---------------------------------------------------- */

typedef struct idmap {
    uint32_t *dense;   /* index for ids 1..ndense, PPROF__NONE when unused */
    size_t ndense;
    uint64_t *hkeys;   /* open addressing for larger ids; key 0 = empty */
    uint32_t *hvals;
    size_t hcap;       /* power of two */
} idmap;

static int idmap_init(idmap *m, size_t n)
{
    size_t i;

    memset(m, 0, sizeof(*m));
    m->ndense = n;
    m->dense = pprof__malloc((n + 1) * sizeof(uint32_t));
    if (!m->dense)
        return PPROF_ENOMEM;
    for (i = 0; i <= n; i++)
        m->dense[i] = PPROF__NONE;
    return 0;
}

static void idmap_free(idmap *m)
{
    pprof__free(m->dense);
    pprof__free(m->hkeys);
    pprof__free(m->hvals);
}

static inline size_t id_slot(uint64_t id, size_t mask)
{
    return (size_t)(pprof__hash_mix(0, id) & mask);
}

/* Returns the index stored for id, or PPROF__NONE. */
static inline uint32_t idmap_get(const idmap *m, uint64_t id)
{
    size_t i, mask;

    if (id <= m->ndense)
        return m->dense[id];
    if (!m->hcap)
        return PPROF__NONE;
    mask = m->hcap - 1;
    for (i = id_slot(id, mask); m->hkeys[i]; i = (i + 1) & mask)
        if (m->hkeys[i] == id)
            return m->hvals[i];
    return PPROF__NONE;
}

/*
 * Records id -> idx. Returns 0, PPROF_ENOMEM, or 1 when the id is taken
 * (*prev is then the earlier index). The caller sized the map for n ids, so
 * the hash table, allocated on first use at 2n slots, never fills.
 */
static int idmap_put(idmap *m, uint64_t id, uint32_t idx, uint32_t *prev)
{
    size_t i, mask;

    if (id <= m->ndense) {
        if (m->dense[id] != PPROF__NONE) {
            *prev = m->dense[id];
            return 1;
        }
        m->dense[id] = idx;
        return 0;
    }
    if (!m->hcap) {
        size_t cap = 16;
        while (cap < 2 * m->ndense)
            cap *= 2;
        m->hkeys = pprof__calloc(cap, sizeof(uint64_t));
        m->hvals = pprof__malloc(cap * sizeof(uint32_t));
        if (!m->hkeys || !m->hvals)
            return PPROF_ENOMEM;
        m->hcap = cap;
    }
    mask = m->hcap - 1;
    for (i = id_slot(id, mask); m->hkeys[i]; i = (i + 1) & mask) {
        if (m->hkeys[i] == id) {
            *prev = m->hvals[i];
            return 1;
        }
    }
    m->hkeys[i] = id;
    m->hvals[i] = idx;
    return 0;
}

/* ---- the checks --------------------------------------------------------- */

static int bad_str(const pprof_profile *p, pprof_error *err, const char *what,
                   int64_t idx)
{
    return pprof__fail(err, PPROF_EINVALID,
                       "%s has string index %lld, but the string table has %zu entries",
                       what, (long long)idx, p->strings.n);
}

#define STR_OK(p, i) ((i) >= 0 && (uint64_t)(i) < (p)->strings.n)

/* Builds the id map of one table; refuses zero and duplicate ids. */
static int index_ids(const pprof_profile *p, idmap *m, const pprof__vec *tab,
                     size_t stride, const char *what, pprof_error *err)
{
    uint32_t prev;
    size_t i;
    int rc;

    (void)p;
    if (idmap_init(m, tab->n))
        return pprof__fail(err, PPROF_ENOMEM, "out of memory validating %ss", what);
    for (i = 0; i < tab->n; i++) {
        /* Every table entry starts with its uint64_t id. */
        uint64_t id = *(const uint64_t *)((const char *)tab->p + i * stride);
        if (id == 0)
            return pprof__fail(err, PPROF_EINVALID, "%s %zu has id 0, which is reserved",
                               what, i);
        rc = idmap_put(m, id, (uint32_t)i, &prev);
        if (rc == PPROF_ENOMEM)
            return pprof__fail(err, PPROF_ENOMEM, "out of memory validating %ss", what);
        if (rc == 1)
            return pprof__fail(err, PPROF_EINVALID, "%ss %u and %zu share id %llu",
                               what, prev, i, (unsigned long long)id);
    }
    return 0;
}

static int check_header(const pprof_profile *p, pprof_error *err)
{
    const pprof__valuetype *st = p->sample_types.p;
    char what[64];
    size_t i;

    if (p->strings.n == 0)
        return pprof__fail(err, PPROF_EINVALID,
                           "the string table is empty; entry 0 must be the empty string");
    if (PPROF__AT(p->strings, pprof__strref, 0).len != 0) {
        char q[48];
        uint32_t len;
        const char *s = pprof__str(p, 0, &len);
        return pprof__fail(err, PPROF_EINVALID,
                           "string table entry 0 is \"%s\", not the empty string",
                           quote_bytes(q, sizeof(q), s, len, 32));
    }
    for (i = 0; i < p->sample_types.n; i++) {
        snprintf(what, sizeof(what), "sample type %zu", i);
        if (!STR_OK(p, st[i].type))
            return bad_str(p, err, what, st[i].type);
        if (!STR_OK(p, st[i].unit))
            return bad_str(p, err, what, st[i].unit);
    }
    if (!STR_OK(p, p->period_type.type))
        return bad_str(p, err, "the period type", p->period_type.type);
    if (!STR_OK(p, p->period_type.unit))
        return bad_str(p, err, "the period type", p->period_type.unit);
    if (!STR_OK(p, p->drop_frames))
        return bad_str(p, err, "drop_frames", p->drop_frames);
    if (!STR_OK(p, p->keep_frames))
        return bad_str(p, err, "keep_frames", p->keep_frames);
    if (!STR_OK(p, p->default_sample_type))
        return bad_str(p, err, "default_sample_type", p->default_sample_type);
    for (i = 0; i < p->comments.n; i++) {
        int64_t c = PPROF__AT(p->comments, int64_t, i);
        if (!STR_OK(p, c)) {
            snprintf(what, sizeof(what), "comment %zu", i);
            return bad_str(p, err, what, c);
        }
    }
    if (p->samples.n && p->sample_types.n == 0)
        return pprof__fail(err, PPROF_EINVALID,
                           "the profile has %zu samples but no sample types", p->samples.n);
    return 0;
}

static int check_mappings(const pprof_profile *p, idmap *m, pprof_error *err)
{
    const pprof__mapping *mp = p->mappings.p;
    char what[64];
    size_t i;
    int rc;

    if ((rc = index_ids(p, m, &p->mappings, sizeof(*mp), "mapping", err)))
        return rc;
    for (i = 0; i < p->mappings.n; i++) {
        snprintf(what, sizeof(what), "mapping %zu (id %llu)", i, (unsigned long long)mp[i].id);
        if (!STR_OK(p, mp[i].filename))
            return bad_str(p, err, what, mp[i].filename);
        if (!STR_OK(p, mp[i].build_id))
            return bad_str(p, err, what, mp[i].build_id);
    }
    return 0;
}

static int check_functions(const pprof_profile *p, idmap *m, pprof_error *err)
{
    const pprof__function *f = p->functions.p;
    char what[64];
    size_t i;
    int rc;

    if ((rc = index_ids(p, m, &p->functions, sizeof(*f), "function", err)))
        return rc;
    for (i = 0; i < p->functions.n; i++) {
        if (STR_OK(p, f[i].name) && STR_OK(p, f[i].system_name) &&
            STR_OK(p, f[i].filename))
            continue;
        snprintf(what, sizeof(what), "function %zu (id %llu)", i, (unsigned long long)f[i].id);
        return bad_str(p, err, what,
                       !STR_OK(p, f[i].name) ? f[i].name
                       : !STR_OK(p, f[i].system_name) ? f[i].system_name
                                                      : f[i].filename);
    }
    return 0;
}

static int check_locations(pprof_profile *p, idmap *m, const idmap *maps,
                           const idmap *funcs, pprof_error *err)
{
    pprof__location *loc = p->locations.p;
    pprof__line *ln = p->lines.p;
    size_t i, j;
    int rc;

    if ((rc = index_ids(p, m, &p->locations, sizeof(*loc), "location", err)))
        return rc;
    for (i = 0; i < p->locations.n; i++) {
        if (loc[i].mapping_id) {
            loc[i].mapping = idmap_get(maps, loc[i].mapping_id);
            if (loc[i].mapping == PPROF__NONE)
                return pprof__fail(err, PPROF_EINVALID,
                                   "location %zu (id %llu) references mapping %llu, which does not exist",
                                   i, (unsigned long long)loc[i].id,
                                   (unsigned long long)loc[i].mapping_id);
        }
        for (j = loc[i].line_off; j < (size_t)loc[i].line_off + loc[i].nline; j++) {
            ln[j].function = ln[j].function_id ? idmap_get(funcs, ln[j].function_id)
                                               : PPROF__NONE;
            if (ln[j].function == PPROF__NONE)
                return pprof__fail(err, PPROF_EINVALID,
                                   "location %zu (id %llu) line %zu references function %llu, which does not exist",
                                   i, (unsigned long long)loc[i].id, j - loc[i].line_off,
                                   (unsigned long long)ln[j].function_id);
        }
    }
    return 0;
}

static int check_samples(pprof_profile *p, const idmap *locs, pprof_error *err)
{
    const pprof__sample *s = p->samples.p;
    const pprof__label *lb = p->labels.p;
    uint64_t *ids = p->locids.p;
    size_t i, j, nst = p->sample_types.n;

    for (i = 0; i < p->samples.n; i++) {
        if (s[i].nval != nst)
            return pprof__fail(err, PPROF_EINVALID,
                               "sample %zu has %u values, but the profile has %zu sample types",
                               i, s[i].nval, nst);
        for (j = s[i].loc_off; j < (size_t)s[i].loc_off + s[i].nloc; j++) {
            uint32_t idx = ids[j] ? idmap_get(locs, ids[j]) : PPROF__NONE;
            if (idx == PPROF__NONE)
                return pprof__fail(err, PPROF_EINVALID,
                                   "sample %zu references location %llu, which does not exist",
                                   i, (unsigned long long)ids[j]);
            ids[j] = idx;
        }
        for (j = 0; j < s[i].nlabel; j++) {
            const pprof__label *l = &lb[s[i].label_off + j];
            char what[64];
            snprintf(what, sizeof(what), "sample %zu label %zu", i, j);
            if (!STR_OK(p, l->key))
                return bad_str(p, err, what, l->key);
            if (!STR_OK(p, l->str))
                return bad_str(p, err, what, l->str);
            if (!STR_OK(p, l->num_unit))
                return bad_str(p, err, what, l->num_unit);
            if (PPROF__AT(p->strings, pprof__strref, l->key).len == 0)
                return pprof__fail(err, PPROF_EINVALID, "%s has an empty key", what);
            if (l->str != 0 && (l->num != 0 || l->num_unit != 0))
                return pprof__fail(err, PPROF_EINVALID,
                                   "%s has both a string and a numeric value", what);
        }
    }
    return 0;
}

int pprof__validate(pprof_profile *p, pprof_error *err)
{
    idmap maps, funcs, locs;
    int rc;

    memset(&maps, 0, sizeof(maps));
    memset(&funcs, 0, sizeof(funcs));
    memset(&locs, 0, sizeof(locs));
    if ((rc = check_header(p, err)))
        goto cleanup;
    if ((rc = check_mappings(p, &maps, err)))
        goto cleanup;
    if ((rc = check_functions(p, &funcs, err)))
        goto cleanup;
    if ((rc = check_locations(p, &locs, &maps, &funcs, err)))
        goto cleanup;
    if ((rc = check_samples(p, &locs, err)))
        goto cleanup;
    p->resolved = true;
cleanup:
    idmap_free(&locs);
    idmap_free(&funcs);
    idmap_free(&maps);
    return rc;
}

/* ---- the CPU rule ------------------------------------------------------- */

static const char *vt_str(const pprof_profile *p, const pprof__valuetype *vt,
                          char *out, size_t outsz)
{
    char t[40], u[40];
    uint32_t tl, ul;
    const char *ts = pprof__str(p, vt->type, &tl);
    const char *us = pprof__str(p, vt->unit, &ul);

    snprintf(out, outsz, "%s/%s", quote_bytes(t, sizeof(t), ts, tl, 24),
             quote_bytes(u, sizeof(u), us, ul, 24));
    return out;
}

int pprof_check_cpu(const pprof_profile *p, pprof_error *err)
{
    static const char *const want[2][2] = {{"samples", "count"}, {"cpu", "nanoseconds"}};
    const pprof__valuetype *st = p->sample_types.p;
    char buf[96];
    size_t i;

    if (!pprof__str_eq(p, p->period_type.type, "cpu") ||
        !pprof__str_eq(p, p->period_type.unit, "nanoseconds"))
        return pprof__fail(err, PPROF_ENOTCPU,
                           "not a CPU profile: period type is %s",
                           p->has_period_type ? vt_str(p, &p->period_type, buf, sizeof(buf))
                                              : "missing");
    if (p->sample_types.n != 2)
        return pprof__fail(err, PPROF_ENOTCPU,
                           "not a CPU profile: it has %zu sample types, expected 2 "
                           "(samples/count, cpu/nanoseconds)",
                           p->sample_types.n);
    for (i = 0; i < 2; i++)
        if (!pprof__str_eq(p, st[i].type, want[i][0]) ||
            !pprof__str_eq(p, st[i].unit, want[i][1]))
            return pprof__fail(err, PPROF_ENOTCPU,
                               "not a CPU profile: sample type %zu is %s, expected %s/%s",
                               i, vt_str(p, &st[i], buf, sizeof(buf)), want[i][0], want[i][1]);
    return 0;
}
