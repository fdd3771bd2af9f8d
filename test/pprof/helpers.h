/*
 * helpers.h: what the pprof engine's unit tests share: fixture loading, a
 * tiny protobuf writer to craft profiles (valid and broken on purpose), a
 * gzip helper, and a counting allocator that can fail on purpose.
 *
 * DESIGN
 * Header-only (static functions) because the Makefile builds each
 * test/pprof/test_*.c as its own binary. The crafted profile is the small
 * CPU profile described at build_profile(); each BP_* variant breaks exactly
 * one rule, so a test names the rule it checks.
 */
#ifndef PPROF_TEST_HELPERS_H
#define PPROF_TEST_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "pprof/internal.h"

/* ---- fixtures --------------------------------------------------------- */

static const char *fixtures_dir(void)
{
    const char *d = getenv("PGOF_FIXTURES");
    return d && *d ? d : "test/fixtures";
}

static char *fixture_path(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s/%s", fixtures_dir(), rel);
    return buf;
}

/* Reads a fixture into a malloc'd buffer (returns owned). */
static uint8_t *read_fixture(const char *rel, size_t *len)
{
    FILE *f = fopen(fixture_path(rel), "rb");
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0, got;

    *len = 0;
    if (!f) {
        fail_msg("cannot open fixture %s", fixture_path(rel));
        return NULL;
    }
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static const char *const cpu_fixtures[] = {
    "profiles/compress.pb.gz", "profiles/fib.pb.gz", "profiles/json.pb.gz",
    "profiles/labels.pb.gz", "profiles/mixed.pb.gz", "profiles/regexp.pb.gz",
    "profiles/sha.pb.gz", "profiles/sort-raw.pb", "profiles/sort.pb.gz",
};
#define N_CPU_FIXTURES (sizeof(cpu_fixtures) / sizeof(cpu_fixtures[0]))

static pprof_profile *decode_fixture(const char *rel)
{
    size_t len = 0;
    uint8_t *buf = read_fixture(rel, &len);
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    int rc = pprof_decode_mem(buf, len, NULL, &p, &err);

    if (rc)
        fail_msg("%s: %d %s", rel, rc, err.msg);
    free(buf);
    return p;
}

/* Sum of value column k over all samples. */
static int64_t total(const pprof_profile *p, size_t k)
{
    const pprof__sample *s = p->samples.p;
    int64_t sum = 0;
    size_t i;

    for (i = 0; i < p->samples.n; i++)
        sum += PPROF__AT(p->values, int64_t, s[i].val_off + k);
    return sum;
}

/* ---- protobuf writer ---------------------------------------------------- */

typedef struct pbw {
    uint8_t *p;
    size_t n, cap;
} pbw;

static void pbw_raw(pbw *b, const void *d, size_t len)
{
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (len)
        memcpy(b->p + b->n, d, len);
    b->n += len;
}

static void pbw_varint(pbw *b, uint64_t v)
{
    uint8_t t[10];
    size_t k = 0;
    while (v >= 0x80) {
        t[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[k++] = (uint8_t)v;
    pbw_raw(b, t, k);
}

/* A varint field, written even when zero. */
static void pbw_uint(pbw *b, unsigned field, uint64_t v)
{
    pbw_varint(b, (uint64_t)field << 3);
    pbw_varint(b, v);
}

static void pbw_bytes(pbw *b, unsigned field, const void *d, size_t len)
{
    pbw_varint(b, (uint64_t)field << 3 | 2);
    pbw_varint(b, len);
    pbw_raw(b, d, len);
}

static void pbw_str(pbw *b, unsigned field, const char *s)
{
    pbw_bytes(b, field, s, strlen(s));
}

/* Appends sub as a length-delimited field and frees it. */
static void pbw_msg(pbw *b, unsigned field, pbw *sub)
{
    pbw_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    memset(sub, 0, sizeof(*sub));
}

/* Packed repeated varints. */
static void pbw_packed(pbw *b, unsigned field, const uint64_t *v, size_t n)
{
    pbw sub = {0};
    size_t i;
    for (i = 0; i < n; i++)
        pbw_varint(&sub, v[i]);
    pbw_msg(b, field, &sub);
}

/* ---- the crafted profile -------------------------------------------------- */

enum bp_variant {
    BP_VALID,
    BP_NO_STRINGS,        /* no string table at all */
    BP_FIRST_STRING,      /* string 0 is "x" */
    BP_FUNC_NAME_RANGE,   /* function 2 name index past the table */
    BP_NEG_STRING,        /* sample type unit index -1 */
    BP_LABEL_STR_RANGE,   /* label value index past the table */
    BP_NO_SAMPLE_TYPES,   /* samples but no sample types */
    BP_VALUE_COUNT,       /* sample 1 has 3 values */
    BP_MAPPING_ID0,
    BP_FUNCTION_ID0,
    BP_LOCATION_ID0,
    BP_DUP_MAPPING,
    BP_DUP_FUNCTION,
    BP_DUP_LOCATION,
    BP_SAMPLE_LOC_MISSING, /* sample 1 references location 99 */
    BP_SAMPLE_LOC_ZERO,    /* sample 0 references location 0 */
    BP_LOC_MAPPING_MISSING,/* location 2 references mapping 7 */
    BP_LINE_FUNC_MISSING,  /* location 1 line references function 42 */
    BP_LINE_FUNC_ZERO,     /* location 1 line references function 0 */
    BP_LABEL_EMPTY_KEY,
    BP_LABEL_BOTH,         /* str and num both set */
    BP_BIG_IDS,            /* valid, ids far from 1..n (hash path) */
    BP_TWO_TIMES,          /* time_nanos twice (concatenated profiles) */
    BP_HEAP,               /* valid, period type space/bytes */
    BP_THREE_TYPES,        /* valid, three sample types */
    BP_SWAPPED_TYPES,      /* valid, cpu/nanoseconds then samples/count */
    BP_NO_PERIOD_TYPE,     /* valid, no period type */
    BP_ZERO_SAMPLE,        /* valid, adds a sample whose values are all 0 */
    BP_UNKNOWN_FIELDS,     /* valid, with unknown fields of each wire type */
    BP_NEGATED,            /* valid, sample 0 values negated */
};

/*
 * Builds a raw protobuf CPU profile (returns owned, length in *len):
 *   strings: "", samples, count, cpu, nanoseconds, main.f, main.go, main.g,
 *            k, v, space, bytes
 *   sample types samples/count, cpu/nanoseconds; period type cpu/nanoseconds,
 *   period 10ms; time 1000, duration 5000
 *   mapping 1 [0x400000, 0x500000) main.go
 *   function 1 main.f, function 2 main.g (file main.go)
 *   location 1 @0x401000 main.f:10, location 2 @0x402000 main.g:20
 *   sample 0: [1 2] values [1, 10ms]; sample 1: [2] values [2, 20ms] label k=v
 */
static uint8_t *build_profile(enum bp_variant v, size_t *len)
{
    static const char *const strs[] = {"", "samples", "count", "cpu", "nanoseconds",
                                       "main.f", "main.go", "main.g", "k", "v",
                                       "space", "bytes"};
    uint64_t mid = 1, f1 = 1, f2 = 2, l1 = 1, l2 = 2;
    pbw b = {0}, m = {0}, sub = {0};
    size_t i, nstr = sizeof(strs) / sizeof(strs[0]);

    if (v == BP_BIG_IDS) {
        mid = 1ull << 40;
        f1 = 77777;
        f2 = 1ull << 63;
        l1 = 5;
        l2 = 123456789;
    }
    /* sample_type */
    if (v != BP_NO_SAMPLE_TYPES) {
        if (v == BP_SWAPPED_TYPES) {
            pbw_uint(&m, 1, 3); pbw_uint(&m, 2, 4); pbw_msg(&b, 1, &m);
            pbw_uint(&m, 1, 1); pbw_uint(&m, 2, 2); pbw_msg(&b, 1, &m);
        } else {
            pbw_uint(&m, 1, 1); pbw_uint(&m, 2, 2); pbw_msg(&b, 1, &m);
            pbw_uint(&m, 1, 3); pbw_uint(&m, 2, v == BP_NEG_STRING ? (uint64_t)-1 : 4);
            pbw_msg(&b, 1, &m);
        }
        if (v == BP_THREE_TYPES) {
            pbw_uint(&m, 1, 10); pbw_uint(&m, 2, 11); pbw_msg(&b, 1, &m);
        }
    }
    /* samples (before the string table, as Go writes them) */
    {
        uint64_t locs0[] = {v == BP_SAMPLE_LOC_ZERO ? 0 : l1, l2};
        uint64_t vals0[] = {1, 10000000, 7};
        if (v == BP_NEGATED) {
            vals0[0] = (uint64_t)-1;
            vals0[1] = (uint64_t)-10000000;
        }
        uint64_t locs1[] = {v == BP_SAMPLE_LOC_MISSING ? 99 : l2};
        uint64_t vals1[] = {2, 20000000, 7};
        size_t nv = v == BP_THREE_TYPES ? 3 : 2;
        pbw_packed(&m, 1, locs0, 2);
        pbw_packed(&m, 2, vals0, nv);
        pbw_msg(&b, 2, &m);
        pbw_packed(&m, 1, locs1, 1);
        pbw_packed(&m, 2, vals1, v == BP_VALUE_COUNT ? 3 : nv);
        pbw_uint(&sub, 1, v == BP_LABEL_EMPTY_KEY ? 0 : 8);
        pbw_uint(&sub, 2, v == BP_LABEL_STR_RANGE ? 500 : 9);
        if (v == BP_LABEL_BOTH)
            pbw_uint(&sub, 3, 42);
        pbw_msg(&m, 3, &sub);
        pbw_msg(&b, 2, &m);
        if (v == BP_ZERO_SAMPLE) {
            uint64_t z[] = {0, 0};
            pbw_packed(&m, 1, locs0, 2);
            pbw_packed(&m, 2, z, 2);
            pbw_msg(&b, 2, &m);
        }
    }
    /* mapping */
    pbw_uint(&m, 1, v == BP_MAPPING_ID0 ? 0 : mid);
    pbw_uint(&m, 2, 0x400000);
    pbw_uint(&m, 3, 0x500000);
    pbw_uint(&m, 5, 6);
    pbw_uint(&m, 7, 1);
    pbw_msg(&b, 3, &m);
    if (v == BP_DUP_MAPPING) {
        pbw_uint(&m, 1, mid);
        pbw_msg(&b, 3, &m);
    }
    /* locations */
    pbw_uint(&m, 1, v == BP_LOCATION_ID0 ? 0 : l1);
    pbw_uint(&m, 2, mid);
    pbw_uint(&m, 3, 0x401000);
    pbw_uint(&sub, 1, v == BP_LINE_FUNC_MISSING ? 42 : v == BP_LINE_FUNC_ZERO ? 0 : f1);
    pbw_uint(&sub, 2, 10);
    pbw_msg(&m, 4, &sub);
    pbw_msg(&b, 4, &m);
    pbw_uint(&m, 1, v == BP_DUP_LOCATION ? l1 : l2);
    pbw_uint(&m, 2, v == BP_LOC_MAPPING_MISSING ? 7 : mid);
    pbw_uint(&m, 3, 0x402000);
    pbw_uint(&sub, 1, f2);
    pbw_uint(&sub, 2, 20);
    pbw_msg(&m, 4, &sub);
    pbw_msg(&b, 4, &m);
    /* functions */
    pbw_uint(&m, 1, v == BP_FUNCTION_ID0 ? 0 : f1);
    pbw_uint(&m, 2, 5);
    pbw_uint(&m, 4, 6);
    pbw_msg(&b, 5, &m);
    pbw_uint(&m, 1, v == BP_DUP_FUNCTION ? f1 : f2);
    pbw_uint(&m, 2, v == BP_FUNC_NAME_RANGE ? nstr : 7);
    pbw_uint(&m, 4, 6);
    pbw_msg(&b, 5, &m);
    if (v == BP_UNKNOWN_FIELDS) {
        uint8_t eight[8] = {0}, four[4] = {0};
        pbw_uint(&b, 20, 5);
        pbw_varint(&b, 21 << 3 | 1);
        pbw_raw(&b, eight, 8);
        pbw_varint(&b, 22 << 3 | 5);
        pbw_raw(&b, four, 4);
        pbw_str(&b, 23, "ignored");
    }
    /* string table */
    if (v != BP_NO_STRINGS)
        for (i = 0; i < nstr; i++)
            pbw_str(&b, 6, i == 0 && v == BP_FIRST_STRING ? "x" : strs[i]);
    pbw_uint(&b, 9, 1000);
    if (v == BP_TWO_TIMES)
        pbw_uint(&b, 9, 2000);
    pbw_uint(&b, 10, 5000);
    if (v != BP_NO_PERIOD_TYPE) {
        pbw_uint(&m, 1, v == BP_HEAP ? 10 : 3);
        pbw_uint(&m, 2, v == BP_HEAP ? 11 : 4);
        pbw_msg(&b, 11, &m);
    }
    pbw_uint(&b, 12, 10000000);
    *len = b.n;
    return b.p;
}

/* Decodes a crafted variant; returns the code, *out set on success. */
static int decode_variant(enum bp_variant v, pprof_profile **out, pprof_error *err)
{
    size_t len;
    uint8_t *buf = build_profile(v, &len);
    int rc = pprof_decode_mem(buf, len, NULL, out, err);
    free(buf);
    return rc;
}

/* ---- gzip ------------------------------------------------------------------ */

/* Gzip-compresses data (returns owned). */
static uint8_t *gzip_bytes(const void *data, size_t len, size_t *out_len)
{
    z_stream z;
    size_t cap = compressBound((uLong)len) + 64;
    uint8_t *out = malloc(cap);

    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = z.total_out;
    deflateEnd(&z);
    return out;
}

/* ---- the counting, failing allocator ------------------------------------------ */

/*
 * Counts live bytes and their peak (a size header precedes each block), and
 * fails every allocation once `fail_after` more allocations have succeeded
 * (-1 = never fail).
 */
static struct {
    long fail_after;
    size_t live, peak, calls;
} talloc = {-1, 0, 0, 0};

static bool talloc_should_fail(void)
{
    talloc.calls++;
    if (talloc.fail_after < 0)
        return false;
    if (talloc.fail_after == 0)
        return true;
    talloc.fail_after--;
    return false;
}

static void *t_malloc(size_t n)
{
    size_t *p;
    if (talloc_should_fail())
        return NULL;
    p = malloc(n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    talloc.live += n;
    if (talloc.live > talloc.peak)
        talloc.peak = talloc.live;
    return (char *)p + 16;
}

static void t_free(void *q)
{
    size_t *p;
    if (!q)
        return;
    p = (size_t *)((char *)q - 16);
    talloc.live -= p[0];
    free(p);
}

static void *t_realloc(void *q, size_t n)
{
    size_t *p, old;
    if (!q)
        return t_malloc(n);
    if (talloc_should_fail())
        return NULL;
    p = (size_t *)((char *)q - 16);
    old = p[0];
    p = realloc(p, n + 16);
    if (!p)
        return NULL;
    p[0] = n;
    talloc.live = talloc.live - old + n;
    if (talloc.live > talloc.peak)
        talloc.peak = talloc.live;
    return (char *)p + 16;
}

static void talloc_install(long fail_after)
{
    static const pprof__allocator a = {t_malloc, t_realloc, t_free};
    talloc.fail_after = fail_after;
    talloc.peak = talloc.live;
    talloc.calls = 0;
    pprof__set_allocator(&a);
}

static void talloc_remove(void)
{
    pprof__set_allocator(NULL);
    talloc.fail_after = -1;
}

/* Asserts that err's message contains needle, printing both on failure. */
#define assert_msg_has(err, needle)                                            \
    do {                                                                       \
        if (!strstr((err).msg, (needle)))                                      \
            fail_msg("message \"%s\" lacks \"%s\"", (err).msg, (needle));      \
    } while (0)

/* Encodes m and decodes the result (returns owned). */
static pprof_profile *roundtrip(const pprof_merger *m)
{
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    uint8_t *buf;
    size_t len;

    if (pprof_merger_encode(m, &buf, &len, &err))
        fail_msg("encode: %s", err.msg);
    if (pprof_decode_mem(buf, len, NULL, &p, &err))
        fail_msg("decode of our output: %s", err.msg);
    pprof__free(buf);
    return p;
}

/* Adds p to m, failing the test with the engine's reason if it refuses. */
static void add_ok(pprof_merger *m, const pprof_profile *p)
{
    pprof_error err = {0, ""};
    if (pprof_merger_add(m, p, &err))
        fail_msg("add: %s", err.msg);
}

/* Each test binary gets a timeout. */
static void test_timeout(unsigned seconds)
{
    alarm(seconds);
}

/* ---- comparing decodes ------------------------------------------------------ */

#define assert_same_table(a, b, field, type)                                   \
    do {                                                                       \
        assert_int_equal((a)->field.n, (b)->field.n);                          \
        if ((a)->field.n)                                                      \
            assert_memory_equal((a)->field.p, (b)->field.p,                    \
                                (a)->field.n * sizeof(type));                  \
    } while (0)

/* Every table and scalar of two decodes of the same input. Tables of
 * structs with padding are compared field by field: padding bytes are
 * whatever the memory held. */
static void assert_same_tables(const pprof_profile *a, const pprof_profile *b)
{
    size_t i;

    assert_int_equal(a->mappings.n, b->mappings.n);
    for (i = 0; i < a->mappings.n; i++) {
        const pprof__mapping *x = PPROF__SLICE(a->mappings, pprof__mapping, i);
        const pprof__mapping *y = PPROF__SLICE(b->mappings, pprof__mapping, i);
        assert_true(x->id == y->id && x->start == y->start && x->limit == y->limit &&
                    x->offset == y->offset && x->filename == y->filename &&
                    x->build_id == y->build_id && x->flags == y->flags);
    }
    assert_int_equal(a->locations.n, b->locations.n);
    for (i = 0; i < a->locations.n; i++) {
        const pprof__location *x = PPROF__SLICE(a->locations, pprof__location, i);
        const pprof__location *y = PPROF__SLICE(b->locations, pprof__location, i);
        assert_true(x->id == y->id && x->mapping_id == y->mapping_id &&
                    x->address == y->address && x->mapping == y->mapping &&
                    x->line_off == y->line_off && x->nline == y->nline &&
                    x->is_folded == y->is_folded);
    }
    assert_int_equal(a->lines.n, b->lines.n);
    for (i = 0; i < a->lines.n; i++) {
        const pprof__line *x = PPROF__SLICE(a->lines, pprof__line, i);
        const pprof__line *y = PPROF__SLICE(b->lines, pprof__line, i);
        assert_true(x->function_id == y->function_id && x->line == y->line &&
                    x->function == y->function);
    }
    assert_same_table(a, b, sample_types, pprof__valuetype);
    assert_same_table(a, b, samples, pprof__sample);
    assert_same_table(a, b, functions, pprof__function);
    assert_same_table(a, b, strings, pprof__strref);
    assert_same_table(a, b, comments, int64_t);
    assert_same_table(a, b, locids, uint64_t);
    assert_same_table(a, b, values, int64_t);
    assert_same_table(a, b, labels, pprof__label);
    assert_same_table(a, b, strbytes, char);
    assert_int_equal(a->time_nanos, b->time_nanos);
    assert_int_equal(a->duration_nanos, b->duration_nanos);
    assert_int_equal(a->period, b->period);
    assert_int_equal(a->drop_frames, b->drop_frames);
    assert_int_equal(a->keep_frames, b->keep_frames);
    assert_int_equal(a->default_sample_type, b->default_sample_type);
    assert_int_equal(a->has_period_type, b->has_period_type);
    assert_int_equal(a->period_type.type, b->period_type.type);
    assert_int_equal(a->period_type.unit, b->period_type.unit);
    assert_int_equal(a->resolved, b->resolved);
    assert_int_equal(a->inflated, b->inflated);
}

/* assert_same_tables, and the same charge: the charge follows the input,
 * never the memory reused nor the inflater. */
static void assert_same_profile(const pprof_profile *a, const pprof_profile *b)
{
    assert_same_tables(a, b);
    assert_int_equal(a->budget.used, b->budget.used);
}

#endif /* PPROF_TEST_HELPERS_H */
