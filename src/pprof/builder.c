/*
 * builder.c: builds a pprof CPU profile in memory, table by table, for
 * producers that sample stacks themselves (the embedded profiler libpgof).
 *
 * DESIGN
 * The builder fills exactly the flat tables a decoded profile has (see
 * internal.h), with ids as the decoder would leave them: mappings,
 * locations and functions are numbered 1..n in the order they are added, a
 * sample holds location ids, a line holds a function id. pprof_builder_finish
 * then runs pprof__validate, the same pass every decoded profile goes
 * through, which checks the string, id and value rules and resolves ids to
 * indices. The result is an ordinary pprof_profile: pprof_check_cpu,
 * pprof_merger_add (which deduplicates) and pprof_merger_write/encode (gzip)
 * take it as they take a decoded one, so a built profile obeys the same
 * rules as a received one and there is no second encoder.
 *
 * The builder interns nothing itself except strings: a function is added
 * once per line given, and the merger folds equal functions, so callers that
 * want compact output send the profile through a merger (as libpgof does).
 * Strings are interned through a small open-addressing table because the
 * same file and function names recur on every location.
 *
 * Mappings get PPROF__MAP_FUNCTIONS (and _FILENAMES/_LINES) once a location
 * in them has a function (a file, a line), as Go's runtime sets
 * HasFunctions: that tells `go tool pprof` the addresses are already
 * symbolized.
 *
 * Memory: all through pprof__malloc (the test allocator seam); the profile's
 * budget records usage without a limit. On any failure the builder stays
 * usable for pprof_builder_free only. Threads: a builder is used by one
 * thread at a time; builders share no state.
 */
#include <string.h>

#include "pprof/internal.h"

struct pprof_builder {
    pprof_profile *p; /* owned until pprof_builder_finish hands it out */
    int failed;       /* first error code; every later call repeats it */
    /* String interning: slot = string index + 1, 0 empty. */
    uint32_t *str_slots;
    size_t str_cap; /* power of two, or 0 */
};

/* ---- strings ------------------------------------------------------------- */

static uint64_t str_hash(const char *s, size_t len)
{
    return pprof__hash_bytes(s, len, 0x70676f66u);
}

static int str_table_grow(pprof_builder *b)
{
    size_t cap = b->str_cap ? b->str_cap * 2 : 256, i, j;
    uint32_t *slots = pprof__calloc(cap, sizeof(uint32_t));
    pprof_profile *p = b->p;

    if (!slots)
        return PPROF_ENOMEM;
    for (i = 0; i < p->strings.n; i++) {
        uint32_t len;
        const char *s = pprof__str(p, (int64_t)i, &len);
        for (j = str_hash(s, len) & (cap - 1); slots[j]; j = (j + 1) & (cap - 1))
            ;
        slots[j] = (uint32_t)i + 1;
    }
    pprof__free(b->str_slots);
    b->str_slots = slots;
    b->str_cap = cap;
    return 0;
}

/* Returns the string index of s (NULL is ""), adding it if new, or -1. */
static int64_t intern(pprof_builder *b, const char *s, pprof_error *err)
{
    pprof_profile *p = b->p;
    size_t len = s ? strlen(s) : 0, i;
    pprof__strref ref;
    int rc;

    if (!s)
        s = "";
    if ((p->strings.n + 1) * 2 > b->str_cap && (rc = str_table_grow(b)))
        goto fail;
    for (i = str_hash(s, len) & (b->str_cap - 1); b->str_slots[i];
         i = (i + 1) & (b->str_cap - 1)) {
        uint32_t idx = b->str_slots[i] - 1, l;
        const char *t = pprof__str(p, idx, &l);
        if (l == len && memcmp(t, s, len) == 0)
            return idx;
    }
    if (p->strings.n >= UINT32_MAX - 1 || p->strbytes.n + len > UINT32_MAX) {
        rc = PPROF_ELIMIT;
        goto fail;
    }
    if ((rc = pprof__vec_grow(&p->strbytes, 1, len, &p->budget)) ||
        (rc = pprof__vec_grow(&p->strings, sizeof(ref), 1, &p->budget)))
        goto fail;
    ref.off = (uint32_t)p->strbytes.n;
    ref.len = (uint32_t)len;
    if (len)
        memcpy((char *)p->strbytes.p + p->strbytes.n, s, len);
    p->strbytes.n += len;
    PPROF__AT(p->strings, pprof__strref, p->strings.n) = ref;
    b->str_slots[i] = (uint32_t)p->strings.n + 1;
    return (int64_t)p->strings.n++;
fail:
    b->failed = rc;
    pprof__fail(err, rc, rc == PPROF_ENOMEM ? "out of memory building a profile"
                                            : "the profile's string table is full");
    return -1;
}

/* Repeats the first failure of b, if any. */
static int check_failed(const pprof_builder *b, pprof_error *err)
{
    if (!b->failed)
        return 0;
    return pprof__fail(err, b->failed, "an earlier builder call failed (%s)",
                       pprof_strerror(b->failed));
}

static int grow_fail(pprof_builder *b, int rc, const char *what, pprof_error *err)
{
    b->failed = rc;
    return pprof__fail(err, rc, "%s adding %s to a profile",
                       rc == PPROF_ENOMEM ? "out of memory" : "table limit", what);
}

/* ---- public -------------------------------------------------------------- */

pprof_builder *pprof_builder_new_cpu(int64_t period_ns, int64_t time_nanos,
                                     int64_t duration_nanos)
{
    pprof_builder *b = pprof__calloc(1, sizeof(*b));
    pprof__valuetype st[2];
    pprof_profile *p;

    if (!b)
        return NULL;
    b->p = p = pprof__calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    /* String 0 must be "", as the validator requires. */
    if (intern(b, "", NULL) != 0)
        goto fail;
    st[0].type = intern(b, "samples", NULL);
    st[0].unit = intern(b, "count", NULL);
    st[1].type = intern(b, "cpu", NULL);
    st[1].unit = intern(b, "nanoseconds", NULL);
    if (b->failed || pprof__vec_grow(&p->sample_types, sizeof(st[0]), 2, &p->budget))
        goto fail;
    memcpy(p->sample_types.p, st, sizeof(st));
    p->sample_types.n = 2;
    p->period_type = st[1];
    p->has_period_type = true;
    p->period = period_ns;
    p->time_nanos = time_nanos;
    p->duration_nanos = duration_nanos;
    return b;
fail:
    pprof_builder_free(b);
    return NULL;
}

void pprof_builder_free(pprof_builder *b)
{
    if (!b)
        return;
    pprof_profile_free(b->p);
    pprof__free(b->str_slots);
    pprof__free(b);
}

int pprof_builder_add_mapping(pprof_builder *b, uint64_t start, uint64_t limit,
                              uint64_t offset, const char *file,
                              const char *build_id, uint64_t *id,
                              pprof_error *err)
{
    pprof_profile *p = b->p;
    pprof__mapping m;
    int rc;

    if ((rc = check_failed(b, err)))
        return rc;
    if (limit < start)
        return pprof__fail(err, PPROF_EINVALID,
                           "mapping limit 0x%llx is below its start 0x%llx",
                           (unsigned long long)limit, (unsigned long long)start);
    memset(&m, 0, sizeof(m));
    m.id = p->mappings.n + 1;
    m.start = start;
    m.limit = limit;
    m.offset = offset;
    if ((m.filename = intern(b, file, err)) < 0 || (m.build_id = intern(b, build_id, err)) < 0)
        return b->failed;
    if ((rc = pprof__vec_grow(&p->mappings, sizeof(m), 1, &p->budget)))
        return grow_fail(b, rc, "a mapping", err);
    PPROF__AT(p->mappings, pprof__mapping, p->mappings.n++) = m;
    *id = m.id;
    return 0;
}

int pprof_builder_add_location(pprof_builder *b, uint64_t mapping_id,
                               uint64_t address,
                               const pprof_builder_line *lines, size_t nlines,
                               uint64_t *id, pprof_error *err)
{
    pprof_profile *p = b->p;
    pprof__location loc;
    size_t i;
    int rc;

    if ((rc = check_failed(b, err)))
        return rc;
    if (mapping_id > p->mappings.n)
        return pprof__fail(err, PPROF_EINVALID,
                           "location at 0x%llx names mapping %llu, but only %zu were added",
                           (unsigned long long)address, (unsigned long long)mapping_id,
                           p->mappings.n);
    if (p->lines.n + nlines > UINT32_MAX)
        return grow_fail(b, PPROF_ELIMIT, "lines", err);
    if ((rc = pprof__vec_grow(&p->lines, sizeof(pprof__line), nlines, &p->budget)) ||
        (rc = pprof__vec_grow(&p->functions, sizeof(pprof__function), nlines, &p->budget)) ||
        (rc = pprof__vec_grow(&p->locations, sizeof(loc), 1, &p->budget)))
        return grow_fail(b, rc, "a location", err);
    memset(&loc, 0, sizeof(loc));
    loc.id = p->locations.n + 1;
    loc.mapping_id = mapping_id;
    loc.mapping = PPROF__NONE;
    loc.address = address;
    loc.line_off = (uint32_t)p->lines.n;
    loc.nline = (uint32_t)nlines;
    for (i = 0; i < nlines; i++) {
        pprof__function f;
        pprof__line ln;
        memset(&f, 0, sizeof(f));
        f.id = p->functions.n + 1;
        if ((f.name = intern(b, lines[i].function, err)) < 0 ||
            (f.system_name = intern(b, lines[i].system_name ? lines[i].system_name
                                                            : lines[i].function, err)) < 0 ||
            (f.filename = intern(b, lines[i].file, err)) < 0)
            return b->failed;
        f.start_line = lines[i].start_line;
        memset(&ln, 0, sizeof(ln));
        ln.function_id = f.id;
        ln.line = lines[i].line;
        PPROF__AT(p->functions, pprof__function, p->functions.n++) = f;
        PPROF__AT(p->lines, pprof__line, p->lines.n++) = ln;
        if (mapping_id) {
            pprof__mapping *m = &PPROF__AT(p->mappings, pprof__mapping, mapping_id - 1);
            m->flags |= PPROF__MAP_FUNCTIONS;
            if (lines[i].file && *lines[i].file)
                m->flags |= PPROF__MAP_FILENAMES;
            if (lines[i].line > 0)
                m->flags |= PPROF__MAP_LINES;
            if (i > 0)
                m->flags |= PPROF__MAP_INLINE;
        }
    }
    PPROF__AT(p->locations, pprof__location, p->locations.n++) = loc;
    *id = loc.id;
    return 0;
}

int pprof_builder_add_sample(pprof_builder *b, const uint64_t *loc_ids,
                             size_t nloc, int64_t count, int64_t cpu_ns,
                             pprof_error *err)
{
    pprof_profile *p = b->p;
    pprof__sample s;
    size_t i;
    int rc;

    if ((rc = check_failed(b, err)))
        return rc;
    for (i = 0; i < nloc; i++)
        if (loc_ids[i] == 0 || loc_ids[i] > p->locations.n)
            return pprof__fail(err, PPROF_EINVALID,
                               "sample frame %zu names location %llu, but only %zu were added",
                               i, (unsigned long long)loc_ids[i], p->locations.n);
    if (p->locids.n + nloc > UINT32_MAX || p->values.n + 2 > UINT32_MAX)
        return grow_fail(b, PPROF_ELIMIT, "a sample", err);
    if ((rc = pprof__vec_grow(&p->locids, sizeof(uint64_t), nloc, &p->budget)) ||
        (rc = pprof__vec_grow(&p->values, sizeof(int64_t), 2, &p->budget)) ||
        (rc = pprof__vec_grow(&p->samples, sizeof(s), 1, &p->budget)))
        return grow_fail(b, rc, "a sample", err);
    memset(&s, 0, sizeof(s));
    s.loc_off = (uint32_t)p->locids.n;
    s.nloc = (uint32_t)nloc;
    s.val_off = (uint32_t)p->values.n;
    s.nval = 2;
    if (nloc)
        memcpy((uint64_t *)p->locids.p + p->locids.n, loc_ids, nloc * sizeof(uint64_t));
    p->locids.n += nloc;
    PPROF__AT(p->values, int64_t, p->values.n++) = count;
    PPROF__AT(p->values, int64_t, p->values.n++) = cpu_ns;
    PPROF__AT(p->samples, pprof__sample, p->samples.n++) = s;
    return 0;
}

int pprof_builder_add_comment(pprof_builder *b, const char *comment,
                              pprof_error *err)
{
    pprof_profile *p = b->p;
    int64_t s;
    int rc;

    if ((rc = check_failed(b, err)))
        return rc;
    if ((s = intern(b, comment, err)) < 0)
        return b->failed;
    if ((rc = pprof__vec_grow(&p->comments, sizeof(s), 1, &p->budget)))
        return grow_fail(b, rc, "a comment", err);
    PPROF__AT(p->comments, int64_t, p->comments.n++) = s;
    return 0;
}

int pprof_builder_finish(pprof_builder *b, pprof_profile **out, pprof_error *err)
{
    int rc;

    *out = NULL;
    if ((rc = check_failed(b, err)))
        return rc;
    if ((rc = pprof__validate(b->p, err))) {
        b->failed = rc;
        return rc;
    }
    *out = b->p;
    b->p = NULL;
    b->failed = PPROF_EINVALID; /* finished: nothing more may be added */
    return 0;
}
