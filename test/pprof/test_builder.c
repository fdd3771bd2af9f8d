/*
 * test_builder.c: src/pprof/builder.c: a built profile passes the CPU rule,
 * survives merge -> gzip encode -> strict decode with every value, name,
 * line, mapping and build id intact; wrong ids are refused with a reason;
 * allocation failure at every step fails cleanly without leaks.
 */
#include "pprof/helpers.h"

/* Builds the small profile the tests share: one mapping, three locations
 * (one with an inlined frame), two stacks. Returns 0 or the failing code. */
static int build_small(pprof_builder **out_b, pprof_error *err)
{
    pprof_builder *b = pprof_builder_new_cpu(10000000, 1700000000000000000LL, 5000000000LL);
    pprof_builder_line burn = {"burn_hot", NULL, "/src/burn.c", 10, 14};
    pprof_builder_line inl[2] = {{"mix", "mix", "/src/mix.h", 3, 5},
                                 {"burn_cold", NULL, "/src/burn.c", 20, 22}};
    pprof_builder_line mainf = {"main", NULL, "/src/main.c", 1, 9};
    uint64_t map, l1, l2, l3, st1[2], st2[2];
    int rc;

    *out_b = b;
    if (!b)
        return pprof__fail(err, PPROF_ENOMEM, "out of memory");
    if ((rc = pprof_builder_add_mapping(b, 0x400000, 0x500000, 0x1000, "/bin/app",
                                        "abcdef0123", &map, err)) ||
        (rc = pprof_builder_add_location(b, map, 0x401234, &burn, 1, &l1, err)) ||
        (rc = pprof_builder_add_location(b, map, 0x402000, inl, 2, &l2, err)) ||
        (rc = pprof_builder_add_location(b, map, 0x403000, &mainf, 1, &l3, err)))
        return rc;
    st1[0] = l1, st1[1] = l3;
    st2[0] = l2, st2[1] = l3;
    if ((rc = pprof_builder_add_sample(b, st1, 2, 30, 300000000, err)) ||
        (rc = pprof_builder_add_sample(b, st2, 2, 10, 100000000, err)) ||
        (rc = pprof_builder_add_comment(b, "built by test_builder", err)))
        return rc;
    return 0;
}

static void test_roundtrip(void **state)
{
    pprof_builder *b;
    pprof_profile *p = NULL, *q = NULL;
    pprof_merger *m;
    pprof_summary *s;
    pprof_error err = {0, ""};
    uint8_t *buf = NULL;
    size_t len = 0, i;
    const pprof__mapping *mp;
    int64_t hot = -1, cold = -1, mix = -1;
    (void)state;

    assert_int_equal(build_small(&b, &err), 0);
    assert_int_equal(pprof_builder_finish(b, &p, &err), 0);
    pprof_builder_free(b);
    assert_int_equal(pprof_check_cpu(p, &err), 0);

    m = pprof_merger_new();
    assert_non_null(m);
    assert_int_equal(pprof_merger_add(m, p, &err), 0);
    assert_int_equal(pprof_merger_encode(m, &buf, &len, &err), 0);
    assert_true(len > 2 && buf[0] == 0x1f && buf[1] == 0x8b);
    assert_int_equal(pprof_decode_mem(buf, len, NULL, &q, &err), 0);
    assert_int_equal(pprof_check_cpu(q, &err), 0);

    assert_int_equal(q->period, 10000000);
    assert_int_equal(q->time_nanos, 1700000000000000000LL);
    assert_int_equal(q->duration_nanos, 5000000000LL);
    assert_int_equal(q->samples.n, 2);
    assert_int_equal(total(q, 0), 40);
    assert_int_equal(total(q, 1), 400000000);
    assert_int_equal(q->mappings.n, 1);
    mp = q->mappings.p;
    assert_int_equal(mp->start, 0x400000);
    assert_int_equal(mp->limit, 0x500000);
    assert_int_equal(mp->offset, 0x1000);
    assert_true(pprof__str_eq(q, mp->filename, "/bin/app"));
    assert_true(pprof__str_eq(q, mp->build_id, "abcdef0123"));
    assert_true(mp->flags & PPROF__MAP_FUNCTIONS);
    assert_true(mp->flags & PPROF__MAP_LINES);
    assert_true(mp->flags & PPROF__MAP_INLINE);
    assert_int_equal(q->comments.n, 1);

    /* Names and flat values through the summary `pgof inspect` uses. */
    assert_int_equal(pprof_summarize(q, &s, &err), 0);
    for (i = 0; i < s->nfuncs; i++) {
        if (strcmp(s->funcs[i].name, "burn_hot") == 0)
            hot = s->funcs[i].flat;
        else if (strcmp(s->funcs[i].name, "burn_cold") == 0)
            cold = s->funcs[i].cum;
        else if (strcmp(s->funcs[i].name, "mix") == 0)
            mix = s->funcs[i].flat;
    }
    assert_int_equal(hot, 300000000);
    assert_int_equal(mix, 100000000);  /* the inlined frame is the leaf */
    assert_int_equal(cold, 100000000);
    pprof_summary_free(s);

    /* The line numbers survive. */
    for (i = 0; i < q->lines.n; i++) {
        const pprof__line *ln = &PPROF__AT(q->lines, pprof__line, i);
        const pprof__function *f = &PPROF__AT(q->functions, pprof__function, ln->function);
        if (pprof__str_eq(q, f->name, "burn_hot")) {
            assert_int_equal(ln->line, 14);
            assert_int_equal(f->start_line, 10);
            assert_true(pprof__str_eq(q, f->filename, "/src/burn.c"));
        }
    }
    free(buf);
    pprof_profile_free(q);
    pprof_profile_free(p);
    pprof_merger_free(m);
}

static void test_bad_ids(void **state)
{
    pprof_builder *b = pprof_builder_new_cpu(1, 0, 0);
    pprof_builder_line f = {"f", NULL, NULL, 0, 0};
    pprof_error err = {0, ""};
    uint64_t id, bad = 7;
    (void)state;

    assert_non_null(b);
    assert_int_equal(pprof_builder_add_location(b, 3, 0x10, &f, 1, &id, &err), PPROF_EINVALID);
    assert_msg_has(err, "names mapping 3");
    assert_int_equal(pprof_builder_add_sample(b, &bad, 1, 1, 1, &err), PPROF_EINVALID);
    assert_msg_has(err, "names location 7");
    assert_int_equal(pprof_builder_add_mapping(b, 10, 5, 0, "x", "", &id, &err), PPROF_EINVALID);
    assert_msg_has(err, "below its start");
    /* Refused arguments do not spoil the builder. */
    assert_int_equal(pprof_builder_add_location(b, 0, 0x10, &f, 1, &id, &err), 0);
    assert_int_equal(id, 1);
    assert_int_equal(pprof_builder_add_sample(b, &id, 1, 1, 1, &err), 0);
    pprof_builder_free(b);
}

static void test_empty_profile(void **state)
{
    pprof_builder *b = pprof_builder_new_cpu(10000000, 0, 0);
    pprof_profile *p = NULL;
    pprof_merger *m = pprof_merger_new();
    pprof_error err = {0, ""};
    uint8_t *buf = NULL;
    size_t len;
    (void)state;

    /* A window with no samples still makes a valid, mergeable profile. */
    assert_int_equal(pprof_builder_finish(b, &p, &err), 0);
    assert_int_equal(pprof_check_cpu(p, &err), 0);
    assert_int_equal(pprof_merger_add(m, p, &err), 0);
    assert_int_equal(pprof_merger_encode(m, &buf, &len, &err), 0);
    /* A finished builder refuses more. */
    assert_int_not_equal(pprof_builder_add_comment(b, "late", &err), 0);
    free(buf);
    pprof_builder_free(b);
    pprof_profile_free(p);
    pprof_merger_free(m);
}

static void test_alloc_failure(void **state)
{
    long n;
    int rc = -1;
    (void)state;

    talloc_install(-1);
    for (n = 0; rc != 0; n++) {
        pprof_builder *b = NULL;
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        talloc.fail_after = n;
        rc = build_small(&b, &err);
        if (rc == 0)
            rc = pprof_builder_finish(b, &p, &err);
        talloc.fail_after = -1;
        if (rc)
            assert_true(rc == PPROF_ENOMEM);
        pprof_profile_free(p);
        pprof_builder_free(b);
        assert_int_equal(talloc.live, 0);
        assert_true(n < 1000);
    }
    talloc_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_empty_profile),
        cmocka_unit_test(test_alloc_failure),
    };
    test_timeout(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
