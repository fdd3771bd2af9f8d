/*
 * test_encode.c: src/pprof/encode.c: the output is gzip, decodes with our
 * own strict decoder, is compact (no duplicate or unreachable entries),
 * streams through the sink in bounded chunks and reports sink failure; an
 * encoder that remembers pieces gives the same bytes and redoes only what
 * changed.
 */
#include "pprof/helpers.h"

typedef struct sink {
    size_t calls, bytes, largest;
    size_t fail_at_call; /* 0 = never */
} sink;

static int on_sink(void *ctx, const void *data, size_t len)
{
    sink *s = ctx;
    (void)data;
    s->calls++;
    s->bytes += len;
    if (len > s->largest)
        s->largest = len;
    return s->fail_at_call && s->calls == s->fail_at_call ? -1 : 0;
}

static pprof_merger *merge_fixtures(void)
{
    pprof_merger *m = pprof_merger_new();
    size_t i;

    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_profile *p = decode_fixture(cpu_fixtures[i]);
        assert_int_equal(pprof_merger_add(m, p, NULL), 0);
        pprof_profile_free(p);
    }
    return m;
}

static void test_empty_merger(void **state)
{
    pprof_merger *m = pprof_merger_new();
    pprof_error err = {0, ""};
    uint8_t *out = (uint8_t *)1;
    size_t len = 1;

    (void)state;
    assert_int_equal(pprof_merger_encode(m, &out, &len, &err), PPROF_EEMPTY);
    assert_msg_has(err, "no profile was added");
    assert_null(out);
    assert_int_equal(len, 0);
    pprof_merger_free(m);
}

static void test_output_is_compact_gzip(void **state)
{
    pprof_merger *m = merge_fixtures();
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    uint8_t *out;
    size_t len, i, j;

    (void)state;
    assert_int_equal(pprof_merger_encode(m, &out, &len, &err), 0);
    assert_true(len > 2 && out[0] == 0x1f && out[1] == 0x8b);
    assert_int_equal(pprof_decode_mem(out, len, NULL, &p, &err), 0);
    assert_int_equal(pprof_check_cpu(p, NULL), 0);
    assert_int_equal(p->samples.n, pprof_merger_samples(m));
    /* No string twice. */
    for (i = 0; i < p->strings.n; i++)
        for (j = i + 1; j < p->strings.n; j++) {
            uint32_t la, lb;
            const char *a = pprof__str(p, (int64_t)i, &la);
            const char *b = pprof__str(p, (int64_t)j, &lb);
            if (la == lb && memcmp(a, b, la) == 0)
                fail_msg("strings %zu and %zu are both \"%.*s\"", i, j, (int)la, a);
        }
    /* Ids are 1..n in order. */
    for (i = 0; i < p->locations.n; i++)
        assert_int_equal(PPROF__AT(p->locations, pprof__location, i).id, i + 1);
    for (i = 0; i < p->functions.n; i++)
        assert_int_equal(PPROF__AT(p->functions, pprof__function, i).id, i + 1);
    pprof_profile_free(p);
    pprof__free(out);
    pprof_merger_free(m);
}

/* Values that cancel out drop the sample and everything only it reached. */
static void test_cancelled_sample_compacted(void **state)
{
    pprof_profile *a = NULL, *neg = NULL, *out;
    pprof_merger *m = pprof_merger_new();
    uint8_t *buf;
    size_t len, i;

    (void)state;
    assert_int_equal(decode_variant(BP_VALID, &a, NULL), 0);
    assert_int_equal(decode_variant(BP_NEGATED, &neg, NULL), 0);
    assert_int_equal(pprof_merger_add(m, a, NULL), 0);
    assert_int_equal(pprof_merger_add(m, neg, NULL), 0);
    assert_int_equal(pprof_merger_encode(m, &buf, &len, NULL), 0);
    assert_int_equal(pprof_decode_mem(buf, len, NULL, &out, NULL), 0);
    assert_int_equal(out->samples.n, 1);
    assert_int_equal(out->locations.n, 1);
    assert_int_equal(out->functions.n, 1);
    assert_true(pprof__str_eq(out, PPROF__AT(out->functions, pprof__function, 0).name,
                              "main.g"));
    for (i = 0; i < out->strings.n; i++)
        assert_false(pprof__str_eq(out, (int64_t)i, "main.f"));
    /* The main mapping stays. */
    assert_int_equal(out->mappings.n, 1);
    pprof_profile_free(out);
    pprof__free(buf);
    pprof_profile_free(a);
    pprof_profile_free(neg);
    pprof_merger_free(m);
}

static void test_sink_chunks_and_failure(void **state)
{
    pprof_merger *m = merge_fixtures();
    pprof_error err = {0, ""};
    sink s = {0, 0, 0, 0};

    (void)state;
    assert_int_equal(pprof_merger_write(m, on_sink, &s, &err), 0);
    assert_true(s.calls >= 1);
    assert_true(s.largest <= 64 * 1024);
    s = (sink){0, 0, 0, 1};
    assert_int_equal(pprof_merger_write(m, on_sink, &s, &err), PPROF_EWRITE);
    assert_msg_has(err, "the output sink refused");
    pprof_merger_free(m);
}

/* The aggregate can be encoded after every add. */
static void test_encode_any_moment(void **state)
{
    pprof_merger *m = pprof_merger_new();
    int64_t want = 0;
    size_t i;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_profile *p = decode_fixture(cpu_fixtures[i]), *out = NULL;
        uint8_t *buf;
        size_t len;
        want += total(p, 1);
        assert_int_equal(pprof_merger_add(m, p, NULL), 0);
        assert_int_equal(pprof_merger_encode(m, &buf, &len, NULL), 0);
        assert_int_equal(pprof_decode_mem(buf, len, NULL, &out, NULL), 0);
        assert_int_equal(total(out, 1), want);
        pprof_profile_free(out);
        pprof__free(buf);
        pprof_profile_free(p);
    }
    pprof_merger_free(m);
}

/* Fails the n-th allocation of an encode of m for n = 0, 1, ... until one
 * succeeds: every failure is "out of memory" and nothing leaks. */
static void assert_encode_survives_oom(const pprof_merger *m)
{
    long n;
    int rc = PPROF_ENOMEM;

    talloc_install(-1);
    for (n = 0; rc == PPROF_ENOMEM; n++) {
        uint8_t *out = NULL;
        size_t len;
        pprof_error err = {0, ""};
        talloc.fail_after = n;
        rc = pprof_merger_encode(m, &out, &len, &err);
        talloc.fail_after = -1;
        if (rc == 0)
            pprof__free(out);
        else
            assert_msg_has(err, "out of memory");
    }
    assert_int_equal(rc, 0);
    talloc_remove();
    assert_int_equal(talloc.live, 0);
}

static void test_alloc_failure(void **state)
{
    pprof_merger *m = merge_fixtures();

    (void)state;
    assert_encode_survives_oom(m);
    pprof_merger_free(m);
}

/*
 * A sample whose stack alone is bigger than the encoder's 64 KiB buffer is
 * built whole in a scratch buffer and still comes out intact, also when
 * allocations fail along the way.
 */
static pprof_merger *merge_deep_stack(size_t depth)
{
    pprof_builder *b = pprof_builder_new_cpu(10000000, 1700000000000000000LL, 1000000000LL);
    uint64_t *ids = calloc(depth, sizeof *ids), map;
    pprof_merger *m = pprof_merger_new();
    pprof_profile *p = NULL;
    size_t i;

    assert_non_null(b);
    assert_non_null(ids);
    assert_non_null(m);
    assert_int_equal(pprof_builder_add_mapping(b, 0x400000, 0x800000, 0, "/bin/deep", "", &map,
                                               NULL), 0);
    for (i = 0; i < depth; i++) {
        char fn[32];
        pprof_builder_line ln = {fn, NULL, "/src/deep.c", 1, (int64_t)i + 1};
        snprintf(fn, sizeof fn, "frame_%zu", i);
        assert_int_equal(pprof_builder_add_location(b, map, 0x400000 + 16 * i, &ln, 1, &ids[i],
                                                    NULL), 0);
    }
    assert_int_equal(pprof_builder_add_sample(b, ids, depth, 3, 30000000, NULL), 0);
    assert_int_equal(pprof_builder_add_sample(b, ids + depth / 2, depth - depth / 2, 1, 10000000,
                                              NULL), 0);
    assert_int_equal(pprof_builder_finish(b, &p, NULL), 0);
    assert_int_equal(pprof_merger_add(m, p, NULL), 0);
    pprof_profile_free(p);
    pprof_builder_free(b);
    free(ids);
    return m;
}

static void test_message_bigger_than_buffer(void **state)
{
    const size_t depth = 40000; /* location ids up to 40,000: 3 bytes each */
    pprof_merger *m = merge_deep_stack(depth);
    pprof_profile *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0, i;

    (void)state;
    assert_int_equal(pprof_merger_encode(m, &buf, &len, NULL), 0);
    assert_int_equal(pprof_decode_mem(buf, len, NULL, &out, NULL), 0);
    assert_int_equal(out->samples.n, 2);
    for (i = 0; i < 2; i++) {
        const pprof__sample *s = &PPROF__AT(out->samples, pprof__sample, i);
        const uint64_t *ids = &PPROF__AT(out->locids, uint64_t, s->loc_off);
        size_t want = i == 0 ? depth : depth - depth / 2, j;
        assert_int_equal(s->nloc, want);
        for (j = 1; j < s->nloc; j++)
            assert_true(ids[j] != ids[j - 1]);
    }
    assert_int_equal(total(out, 0), 4);
    assert_int_equal(total(out, 1), 40000000);
    pprof_profile_free(out);
    pprof__free(buf);
    assert_encode_survives_oom(m);
    pprof_merger_free(m);
}

/*
 * Equal aggregates encode to equal bytes, however the heap and the stack
 * look: build caches and reproducible builds key on the profile file. (An
 * igzip encoder failed this about once in fifty encodes; docs/performance.md.)
 */
static void test_output_is_deterministic(void **state)
{
    static const uint8_t tiny[] = {0x32, 0x00, 0x32, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x0a,
                                   0x00, 0x0a, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x0a, 0x00,
                                   0x0a, 0x00, 0x32, 0x00, 0x0a, 0x00, 0x0a, 0x00};
    pprof_merger *ms[2] = {pprof_merger_new(), merge_fixtures()};
    const size_t rounds[2] = {2000, 100};
    pprof_profile *p = NULL;
    uint8_t *kept[700];
    size_t k, i, nkept = 0;

    (void)state;
    assert_int_equal(pprof_decode_mem(tiny, sizeof tiny, NULL, &p, NULL), 0);
    assert_int_equal(pprof_merger_add(ms[0], p, NULL), 0);
    assert_int_equal(pprof_merger_add(ms[0], p, NULL), 0);
    pprof_profile_free(p);
    for (k = 0; k < 2; k++) {
        uint8_t *first, *out;
        size_t first_len, len;
        assert_int_equal(pprof_merger_encode(ms[k], &first, &first_len, NULL), 0);
        for (i = 0; i < rounds[k]; i++) {
            sink sk = {0, 0, 0, 0};
            /* Churn: blocks of changing sizes and contents, a third kept. */
            uint8_t *junk = malloc(100000 + i * 13);
            assert_non_null(junk);
            memset(junk, (int)i, 100000);
            assert_int_equal(pprof_merger_write(ms[k], on_sink, &sk, NULL), 0);
            assert_int_equal(sk.bytes, first_len);
            assert_int_equal(pprof_merger_encode(ms[k], &out, &len, NULL), 0);
            assert_int_equal(len, first_len);
            assert_memory_equal(out, first, len);
            pprof__free(out);
            if (i % 3 || nkept == sizeof kept / sizeof kept[0])
                free(junk);
            else
                kept[nkept++] = junk;
        }
        pprof__free(first);
        pprof_merger_free(ms[k]);
    }
    while (nkept)
        free(kept[--nkept]);
}

/*
 * A profile of one binary with nloc functions, one location each, and
 * nsamples samples whose 3-frame stacks start at location (first + k) % nloc
 * (value weight each): wide enough for several pieces per section.
 */
static pprof_profile *wide_profile(size_t nloc, size_t first, size_t nsamples, int64_t weight)
{
    pprof_builder *b = pprof_builder_new_cpu(10000000, 1700000000000000000LL, 1000000000LL);
    uint64_t *ids = calloc(nloc, sizeof *ids), map, stack[3];
    pprof_profile *p = NULL;
    size_t i, k;

    assert_non_null(b);
    assert_non_null(ids);
    assert_int_equal(pprof_builder_add_mapping(b, 0x400000, 0x4000000, 0, "/bin/wide", "abc",
                                               &map, NULL), 0);
    for (i = 0; i < nloc; i++) {
        char fn[48];
        pprof_builder_line ln = {fn, NULL, "/src/wide.go", 10, (int64_t)i + 11};
        snprintf(fn, sizeof fn, "main.function_number_%zu", i);
        assert_int_equal(pprof_builder_add_location(b, map, 0x400000 + 16 * i, &ln, 1, &ids[i],
                                                    NULL), 0);
    }
    for (k = 0; k < nsamples; k++) {
        for (i = 0; i < 3; i++)
            stack[i] = ids[(first + k + i * 7) % nloc];
        assert_int_equal(pprof_builder_add_sample(b, stack, 3, weight, weight * 10000000, NULL),
                         0);
    }
    assert_int_equal(pprof_builder_finish(b, &p, NULL), 0);
    pprof_builder_free(b);
    free(ids);
    return p;
}

static void merge_in(pprof_merger *m, pprof_profile *p)
{
    assert_int_equal(pprof_merger_add(m, p, NULL), 0);
    pprof_profile_free(p);
}

/* Encodes m with x and on its own; both must give the same bytes. Returns
 * x's stats. */
static pprof_encoder_stats encode_both(pprof_encoder *x, const pprof_merger *m)
{
    uint8_t *a, *b;
    size_t alen, blen;
    pprof_encoder_stats st;
    pprof_profile *back = NULL;

    assert_int_equal(pprof_encoder_encode(x, m, &a, &alen, NULL), 0);
    assert_int_equal(pprof_merger_encode(m, &b, &blen, NULL), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(a, b, alen);
    assert_int_equal(pprof_decode_mem(a, alen, NULL, &back, NULL), 0);
    pprof_profile_free(back);
    pprof__free(a);
    pprof__free(b);
    pprof_encoder_get_stats(x, &st);
    return st;
}

/*
 * An encoder that remembers pieces gives exactly the one-shot bytes after
 * every kind of change, and deflates again only what changed: values of a
 * few samples, new samples and entries, samples cancelled to zero (which
 * renumbers everything), another merger.
 */
static void test_encoder_reuses_unchanged_pieces(void **state)
{
    pprof_encoder *x = pprof_encoder_new();
    pprof_merger *m = pprof_merger_new(), *other = merge_fixtures();
    pprof_encoder_stats st;
    pprof_profile *neg;

    (void)state;
    assert_non_null(x);
    merge_in(m, wide_profile(6000, 0, 5000, 1));
    st = encode_both(x, m);
    assert_true(st.pieces >= 12); /* 5 of samples, 3 of locations, 2 of functions, ... */
    assert_int_equal(st.pieces_reused, 0);

    /* Nothing changed: everything is reused. */
    st = encode_both(x, m);
    assert_int_equal(st.pieces_reused, st.pieces);

    /* Three samples of the first group get more: that group and the tail. */
    merge_in(m, wide_profile(6000, 0, 3, 2));
    st = encode_both(x, m);
    assert_int_equal(st.pieces_reused, st.pieces - 2);
    assert_true(st.bytes_reused > st.bytes * 3 / 4);

    /* New samples and locations at the end: only the last pieces change. */
    merge_in(m, wide_profile(6500, 5990, 20, 1));
    st = encode_both(x, m);
    assert_true(st.pieces - st.pieces_reused <= 6);
    assert_true(st.bytes_reused > st.bytes / 2);

    /* A sample cancelled to zero drops out and renumbers what only it
     * reached: the output follows. */
    neg = wide_profile(6000, 0, 1, 1);
    PPROF__AT(neg->values, int64_t, 0) = -3;
    PPROF__AT(neg->values, int64_t, 1) = -30000000;
    merge_in(m, neg);
    st = encode_both(x, m);
    st = encode_both(x, m);
    assert_int_equal(st.pieces_reused, st.pieces);

    /* Another merger through the same encoder, and back. */
    encode_both(x, other);
    encode_both(x, m);
    merge_in(m, wide_profile(6000, 100, 1, 1));
    encode_both(x, m);
    pprof_merger_free(other);
    pprof_merger_free(m);
    pprof_encoder_free(x);
}

/* Samples first.. of 38,000 frames each, about 114 KB of protobuf: twelve
 * make one group of 1.4 MB, more than a piece may hold in memory. */
static pprof_profile *deep_samples(size_t first, size_t nsamples, int64_t weight)
{
    const size_t depth = 50000, frames = 38000;
    pprof_builder *b = pprof_builder_new_cpu(10000000, 1700000000000000000LL, 1000000000LL);
    uint64_t *ids = calloc(depth, sizeof *ids), map;
    pprof_profile *p = NULL;
    size_t i;

    assert_non_null(b);
    assert_non_null(ids);
    assert_int_equal(pprof_builder_add_mapping(b, 0x400000, 0x4000000, 0, "/bin/deep", "", &map,
                                               NULL), 0);
    for (i = 0; i < depth; i++) {
        pprof_builder_line ln = {"main.recurse", NULL, "/src/deep.go", 1, (int64_t)i + 1};
        assert_int_equal(pprof_builder_add_location(b, map, 0x400000 + 16 * i, &ln, 1, &ids[i],
                                                    NULL), 0);
    }
    for (i = first; i < first + nsamples; i++)
        assert_int_equal(pprof_builder_add_sample(b, ids + i * 1000, frames, weight,
                                                  weight * 10000000, NULL), 0);
    assert_int_equal(pprof_builder_finish(b, &p, NULL), 0);
    pprof_builder_free(b);
    free(ids);
    return p;
}

/* A group too big for one piece is cut in two. Unchanged, both halves are
 * sent as they were; when a sample of the second half changes, the group is
 * written again and only that half (and the tail) is deflated again. */
static void test_encoder_group_in_two_pieces(void **state)
{
    pprof_encoder *x = pprof_encoder_new();
    pprof_merger *m = pprof_merger_new();
    pprof_encoder_stats st, first;

    (void)state;
    merge_in(m, deep_samples(0, 12, 1));
    first = encode_both(x, m);
    /* head, 2 of samples, mapping, 2 of locations (50,000 > 2 x 2,048 ...),
     * functions, strings, tail: at least 2 more than one per section. */
    assert_true(first.pieces >= 9);
    st = encode_both(x, m);
    assert_int_equal(st.pieces_reused, st.pieces);
    merge_in(m, deep_samples(11, 1, 1));
    st = encode_both(x, m);
    assert_int_equal(st.pieces, first.pieces);
    assert_int_equal(st.pieces - st.pieces_reused, 2);
    /* Two samples and the tail, not the whole group. */
    assert_true(st.bytes - st.bytes_reused < 512u << 10);
    pprof_merger_free(m);
    pprof_encoder_free(x);
}

static int on_fail_third(void *ctx, const void *data, size_t len)
{
    (void)data;
    (void)len;
    return ++*(int *)ctx == 3 ? -1 : 0;
}

/* A failed encode (sink refusal, out of memory at any allocation) leaves an
 * encoder whose next output is still exact, and nothing leaks. */
static void test_encoder_after_failures(void **state)
{
    pprof_encoder *x;
    pprof_merger *m;
    pprof_error err = {0, ""};
    int calls = 0, rc = PPROF_ENOMEM;
    long n;

    (void)state;
    talloc_install(-1);
    x = pprof_encoder_new();
    m = pprof_merger_new();
    merge_in(m, wide_profile(3000, 0, 2500, 1));
    encode_both(x, m);
    merge_in(m, wide_profile(3000, 5, 2, 1));
    assert_int_equal(pprof_encoder_write(x, m, on_fail_third, &calls, &err), PPROF_EWRITE);
    encode_both(x, m);
    for (n = 0; rc == PPROF_ENOMEM; n++) {
        uint8_t *out = NULL;
        size_t len;
        /* Each round changes the aggregate, so each has something to redo. */
        talloc.fail_after = -1;
        merge_in(m, wide_profile(3000 + (size_t)n, (size_t)n * 37, 3, 1));
        talloc.fail_after = n;
        rc = pprof_encoder_encode(x, m, &out, &len, &err);
        talloc.fail_after = -1;
        if (rc == 0)
            pprof__free(out);
        else
            assert_msg_has(err, "out of memory");
        encode_both(x, m);
    }
    assert_int_equal(rc, 0);
    pprof_merger_free(m);
    pprof_encoder_free(x);
    talloc_remove();
    assert_int_equal(talloc.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_merger),
        cmocka_unit_test(test_output_is_compact_gzip),
        cmocka_unit_test(test_cancelled_sample_compacted),
        cmocka_unit_test(test_sink_chunks_and_failure),
        cmocka_unit_test(test_encode_any_moment),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_message_bigger_than_buffer),
        cmocka_unit_test(test_output_is_deterministic),
        cmocka_unit_test(test_encoder_reuses_unchanged_pieces),
        cmocka_unit_test(test_encoder_group_in_two_pieces),
        cmocka_unit_test(test_encoder_after_failures),
    };
    test_timeout(120);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
