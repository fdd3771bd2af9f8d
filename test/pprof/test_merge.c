/*
 * test_merge.c: src/pprof/merge.c: pprof's Merge semantics, the
 * all-or-nothing promise of pprof_merger_add (incompatible input and every
 * allocation failure leave the aggregate exactly as it was), and memory
 * that does not grow with repeated profiles.
 */
#include "pprof/helpers.h"

/* The original collector's test: the same profile twice doubles every value. */
static void test_twice_doubles(void **state)
{
    size_t i, j;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_profile *p = decode_fixture(cpu_fixtures[i]), *once, *twice;
        pprof_merger *m1 = pprof_merger_new(), *m2 = pprof_merger_new();
        add_ok(m1, p);
        add_ok(m2, p);
        add_ok(m2, p);
        assert_int_equal(pprof_merger_samples(m1), pprof_merger_samples(m2));
        assert_int_equal(pprof_merger_profiles(m2), 2);
        once = roundtrip(m1);
        twice = roundtrip(m2);
        assert_int_equal(once->samples.n, twice->samples.n);
        for (j = 0; j < once->values.n; j++)
            assert_int_equal(2 * PPROF__AT(once->values, int64_t, j),
                             PPROF__AT(twice->values, int64_t, j));
        assert_int_equal(total(once, 1), total(p, 1));
        assert_int_equal(total(twice, 1), 2 * total(p, 1));
        assert_int_equal(twice->duration_nanos, 2 * p->duration_nanos);
        assert_int_equal(twice->time_nanos, p->time_nanos);
        assert_int_equal(pprof_check_cpu(twice, NULL), 0);
        pprof_profile_free(once);
        pprof_profile_free(twice);
        pprof_merger_free(m1);
        pprof_merger_free(m2);
        pprof_profile_free(p);
    }
}

/* Totals of a merge of every fixture are the sums of their totals. */
static void test_all_fixtures_totals(void **state)
{
    pprof_merger *m = pprof_merger_new();
    int64_t want0 = 0, want1 = 0;
    pprof_profile *out;
    size_t i;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_profile *p = decode_fixture(cpu_fixtures[i]);
        want0 += total(p, 0);
        want1 += total(p, 1);
        add_ok(m, p);
        pprof_profile_free(p);
    }
    out = roundtrip(m);
    assert_int_equal(total(out, 0), want0);
    assert_int_equal(total(out, 1), want1);
    /* sort-raw and sort are one profile: their stacks merged. */
    assert_true(out->samples.n < 900);
    pprof_profile_free(out);
    pprof_merger_free(m);
}

static void test_incompatible_refused(void **state)
{
    pprof_profile *cpu = decode_fixture("profiles/fib.pb.gz");
    pprof_profile *heap = decode_fixture("bad/heap.pb.gz");
    pprof_profile *three = NULL;
    pprof_merger *m = pprof_merger_new();
    pprof_error err = {0, ""};
    uint8_t *before, *after;
    size_t blen, alen;

    (void)state;
    add_ok(m, cpu);
    assert_int_equal(pprof_merger_encode(m, &before, &blen, NULL), 0);
    assert_int_equal(pprof_merger_add(m, heap, &err), PPROF_EINCOMPAT);
    assert_msg_has(err, "period type space/bytes, the aggregate has cpu/nanoseconds");
    assert_int_equal(decode_variant(BP_THREE_TYPES, &three, NULL), 0);
    assert_int_equal(pprof_merger_add(m, three, &err), PPROF_EINCOMPAT);
    assert_msg_has(err, "sample types [samples/count cpu/nanoseconds space/bytes]");
    assert_int_equal(pprof_merger_profiles(m), 1);
    assert_int_equal(pprof_merger_encode(m, &after, &alen, NULL), 0);
    assert_int_equal(alen, blen);
    assert_memory_equal(before, after, blen);
    pprof__free(before);
    pprof__free(after);
    pprof_profile_free(three);
    pprof_profile_free(heap);
    pprof_profile_free(cpu);
    pprof_merger_free(m);
}

/* Zero samples are skipped; what only they reach is not written. */
static void test_zero_samples_skipped(void **state)
{
    pprof_profile *p = NULL, *out;
    pprof_merger *m = pprof_merger_new();

    (void)state;
    assert_int_equal(decode_variant(BP_ZERO_SAMPLE, &p, NULL), 0);
    assert_int_equal(p->samples.n, 3);
    add_ok(m, p);
    assert_int_equal(pprof_merger_samples(m), 2);
    out = roundtrip(m);
    assert_int_equal(out->samples.n, 2);
    pprof_profile_free(out);
    pprof_profile_free(p);
    pprof_merger_free(m);
}

/* Big, sparse ids merge like dense ones: same stacks, renumbered 1..n. */
static void test_ids_renumbered(void **state)
{
    pprof_profile *a = NULL, *b = NULL, *out;
    pprof_merger *m = pprof_merger_new();

    (void)state;
    assert_int_equal(decode_variant(BP_VALID, &a, NULL), 0);
    assert_int_equal(decode_variant(BP_BIG_IDS, &b, NULL), 0);
    add_ok(m, a);
    add_ok(m, b);
    assert_int_equal(pprof_merger_samples(m), 2);
    out = roundtrip(m);
    assert_int_equal(out->locations.n, 2);
    assert_int_equal(out->functions.n, 2);
    assert_int_equal(out->mappings.n, 1);
    assert_int_equal(PPROF__AT(out->locations, pprof__location, 1).id, 2);
    assert_int_equal(PPROF__AT(out->mappings, pprof__mapping, 0).id, 1);
    assert_int_equal(total(out, 1), 60000000);
    assert_int_equal(out->duration_nanos, 10000);
    pprof_profile_free(out);
    pprof_profile_free(a);
    pprof_profile_free(b);
    pprof_merger_free(m);
}

/*
 * Crafted two-profile cases built from raw protobuf: a mapping loaded at a
 * different address (ASLR) and labels in a different order.
 */
static uint8_t *mini(uint64_t map_start, int labels_swapped, int64_t time, int64_t period,
                     const char *comment, size_t *len)
{
    static const char *const strs[] = {"", "samples", "count", "cpu", "nanoseconds",
                                       "f", "bin", "a", "b", "x", "y", "c1", "c2"};
    pbw b = {0}, m = {0}, sub = {0};
    uint64_t loc[] = {1}, val[] = {1, 100};
    size_t i;

    pbw_uint(&m, 1, 1); pbw_uint(&m, 2, 2); pbw_msg(&b, 1, &m);
    pbw_uint(&m, 1, 3); pbw_uint(&m, 2, 4); pbw_msg(&b, 1, &m);
    pbw_packed(&m, 1, loc, 1);
    pbw_packed(&m, 2, val, 2);
    for (i = 0; i < 2; i++) {
        int which = labels_swapped ? 1 - (int)i : (int)i;
        pbw_uint(&sub, 1, which ? 8 : 7);
        pbw_uint(&sub, 2, which ? 10 : 9);
        pbw_msg(&m, 3, &sub);
    }
    pbw_msg(&b, 2, &m);
    pbw_uint(&m, 1, 1);
    pbw_uint(&m, 2, map_start);
    pbw_uint(&m, 3, map_start + 0x10000);
    pbw_uint(&m, 5, 6);
    pbw_msg(&b, 3, &m);
    pbw_uint(&m, 1, 1);
    pbw_uint(&m, 2, 1);
    pbw_uint(&m, 3, map_start + 0x123);
    pbw_uint(&sub, 1, 1);
    pbw_uint(&sub, 2, 7);
    pbw_msg(&m, 4, &sub);
    pbw_msg(&b, 4, &m);
    pbw_uint(&m, 1, 1);
    pbw_uint(&m, 2, 5);
    pbw_msg(&b, 5, &m);
    for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        pbw_str(&b, 6, strs[i]);
    pbw_uint(&b, 9, (uint64_t)time);
    pbw_uint(&b, 10, 1000);
    pbw_uint(&m, 1, 3); pbw_uint(&m, 2, 4); pbw_msg(&b, 11, &m);
    pbw_uint(&b, 12, (uint64_t)period);
    if (comment) {
        uint64_t c[] = {strcmp(comment, "c1") == 0 ? 11u : 12u};
        pbw_packed(&b, 13, c, 1);
    }
    *len = b.n;
    return b.p;
}

static pprof_profile *mini_profile(uint64_t map_start, int swapped, int64_t time,
                                   int64_t period, const char *comment)
{
    size_t len;
    uint8_t *buf = mini(map_start, swapped, time, period, comment, &len);
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};

    if (pprof_decode_mem(buf, len, NULL, &p, &err))
        fail_msg("mini: %s", err.msg);
    free(buf);
    return p;
}

static void test_aslr_and_label_order(void **state)
{
    pprof_profile *a = mini_profile(0x400000, 0, 500, 10, "c1");
    pprof_profile *b = mini_profile(0x7f0000000000, 1, 300, 20, "c2");
    pprof_profile *c = mini_profile(0x400000, 0, 0, 5, "c1");
    pprof_merger *m = pprof_merger_new();
    pprof_profile *out;

    (void)state;
    add_ok(m, a);
    add_ok(m, b);
    add_ok(m, c);
    /* one mapping, one location, one sample: all three merged */
    assert_int_equal(pprof_merger_samples(m), 1);
    out = roundtrip(m);
    assert_int_equal(out->samples.n, 1);
    assert_int_equal(out->mappings.n, 1);
    assert_int_equal(out->locations.n, 1);
    /* the first profile's mapping address is kept, later ones are shifted */
    assert_int_equal(PPROF__AT(out->locations, pprof__location, 0).address, 0x400123);
    assert_int_equal(total(out, 0), 3);
    assert_int_equal(total(out, 1), 300);
    /* earliest non-zero time, summed duration, largest period */
    assert_int_equal(out->time_nanos, 300);
    assert_int_equal(out->duration_nanos, 3000);
    assert_int_equal(out->period, 20);
    /* comments deduplicated, in first-seen order */
    assert_int_equal(out->comments.n, 2);
    assert_true(pprof__str_eq(out, PPROF__AT(out->comments, int64_t, 0), "c1"));
    assert_true(pprof__str_eq(out, PPROF__AT(out->comments, int64_t, 1), "c2"));
    pprof_profile_free(out);
    pprof_profile_free(a);
    pprof_profile_free(b);
    pprof_profile_free(c);
    pprof_merger_free(m);
}

/* Adding the same profiles again and again does not grow the merger. */
static void test_memory_flat(void **state)
{
    pprof_profile *p[N_CPU_FIXTURES];
    pprof_merger *m;
    uint64_t after_one;
    size_t i, r;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++)
        p[i] = decode_fixture(cpu_fixtures[i]);
    m = pprof_merger_new();
    for (i = 0; i < N_CPU_FIXTURES; i++)
        add_ok(m, p[i]);
    after_one = m->budget.used;
    for (r = 0; r < 50; r++)
        for (i = 0; i < N_CPU_FIXTURES; i++)
            add_ok(m, p[i]);
    assert_int_equal(m->budget.used, after_one);
    assert_int_equal(pprof_merger_profiles(m), 51 * N_CPU_FIXTURES);
    for (i = 0; i < N_CPU_FIXTURES; i++)
        pprof_profile_free(p[i]);
    pprof_merger_free(m);
}

/*
 * Every allocation of an add fails in turn: the add reports ENOMEM and the
 * aggregate encodes to exactly the same bytes as before; the merger stays
 * usable and a later add succeeds.
 */
static void test_alloc_failure_rolls_back(void **state)
{
    pprof_profile *first = decode_fixture("profiles/fib.pb.gz");
    pprof_profile *second = decode_fixture("profiles/labels.pb.gz");
    uint8_t *before, *after;
    size_t blen, alen;
    long n;
    int rc = PPROF_ENOMEM;

    (void)state;
    for (n = 0; rc == PPROF_ENOMEM; n++) {
        pprof_merger *m;
        pprof_error err = {0, ""};
        talloc_install(-1);
        m = pprof_merger_new();
        add_ok(m, first);
        assert_int_equal(pprof_merger_encode(m, &before, &blen, NULL), 0);
        talloc.fail_after = n;
        rc = pprof_merger_add(m, second, &err);
        talloc.fail_after = -1;
        if (rc == PPROF_ENOMEM) {
            assert_msg_has(err, "out of memory");
            assert_int_equal(pprof_merger_profiles(m), 1);
            assert_int_equal(pprof_merger_encode(m, &after, &alen, NULL), 0);
            assert_int_equal(alen, blen);
            assert_memory_equal(before, after, blen);
            pprof__free(after);
            add_ok(m, second);
        } else {
            assert_int_equal(rc, 0);
        }
        assert_int_equal(pprof_merger_profiles(m), 2);
        pprof__free(before);
        pprof_merger_free(m);
        talloc_remove();
        assert_int_equal(talloc.live, 0);
    }
    assert_true(n > 5);
    pprof_profile_free(first);
    pprof_profile_free(second);
}

static void test_new_fails_cleanly(void **state)
{
    (void)state;
    pprof_merger_free(NULL); /* like free(NULL) */
    pprof_profile_free(NULL);
    talloc_install(0);
    assert_null(pprof_merger_new());
    talloc_remove();
    talloc_install(1);
    assert_null(pprof_merger_new());
    talloc_remove();
    assert_int_equal(talloc.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_twice_doubles),
        cmocka_unit_test(test_all_fixtures_totals),
        cmocka_unit_test(test_incompatible_refused),
        cmocka_unit_test(test_zero_samples_skipped),
        cmocka_unit_test(test_ids_renumbered),
        cmocka_unit_test(test_aslr_and_label_order),
        cmocka_unit_test(test_memory_flat),
        cmocka_unit_test(test_alloc_failure_rolls_back),
        cmocka_unit_test(test_new_fails_cleanly),
    };
    test_timeout(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
