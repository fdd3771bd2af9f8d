/*
 * test_summary.c: src/pprof/summary.c (pprof_summarize, behind `pgof
 * inspect`): the figures on a crafted profile whose answer is known by hand,
 * the same on a real fixture against independent sums, and every
 * out-of-memory path through the engine's failing allocator.
 */
#include "pprof/helpers.h"

static pprof_summary_func *find_func(pprof_summary *s, const char *name)
{
    for (size_t i = 0; i < s->nfuncs; i++)
        if (strcmp(s->funcs[i].name, name) == 0)
            return &s->funcs[i];
    fail_msg("function %s not in the summary", name);
    return NULL;
}

/* The crafted profile (helpers.h build_profile): sample 0 is main.f called
 * by main.g, values [1, 10ms]; sample 1 is main.g alone, [2, 20ms]. */
static void check_crafted(enum bp_variant v)
{
    pprof_profile *p = NULL;
    pprof_summary *s = NULL;
    pprof_error err = {0};

    assert_int_equal(decode_variant(v, &p, &err), 0);
    assert_int_equal(pprof_summarize(p, &s, &err), 0);
    assert_int_equal(s->ntypes, 2);
    assert_string_equal(s->types[0].type, "samples");
    assert_string_equal(s->types[1].unit, "nanoseconds");
    assert_int_equal(s->totals[0], 3);
    assert_int_equal(s->totals[1], 30000000);
    assert_int_equal(s->value_index, 1);
    assert_string_equal(s->period_type, "cpu");
    assert_int_equal(s->period, 10000000);
    assert_int_equal(s->time_nanos, 1000);
    assert_int_equal(s->duration_nanos, 5000);
    assert_int_equal(s->samples, 2);
    assert_int_equal(s->stacks, 2);
    assert_int_equal(s->functions, 2);
    assert_int_equal(s->locations, 2);
    assert_int_equal(s->nfuncs, 2);
    /* Sorted by flat: main.g (20ms) before main.f (10ms). */
    assert_string_equal(s->funcs[0].name, "main.g");
    assert_int_equal(find_func(s, "main.g")->flat, 20000000);
    assert_int_equal(find_func(s, "main.g")->cum, 30000000);
    assert_int_equal(find_func(s, "main.f")->flat, 10000000);
    assert_int_equal(find_func(s, "main.f")->cum, 10000000);
    pprof_summary_free(s);
    pprof_profile_free(p);
}

static void test_crafted(void **state)
{
    (void)state;
    check_crafted(BP_VALID);
    check_crafted(BP_BIG_IDS);
}

/* Recursion (fib) is counted once per sample in cum; flats sum to the total;
 * no cum exceeds the total. */
static void test_fixture_invariants(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_CPU_FIXTURES; k++) {
        pprof_profile *p = decode_fixture(cpu_fixtures[k]);
        pprof_summary *s = NULL;
        pprof_error err = {0};
        int64_t flat = 0;

        assert_int_equal(pprof_summarize(p, &s, &err), 0);
        for (size_t i = 0; i < s->nfuncs; i++) {
            flat += s->funcs[i].flat;
            assert_true(s->funcs[i].cum >= s->funcs[i].flat);
            assert_true(s->funcs[i].cum <= s->totals[s->value_index]);
            if (i)
                assert_true(s->funcs[i - 1].flat >= s->funcs[i].flat);
        }
        assert_int_equal(flat, s->totals[s->value_index]);
        assert_int_equal(s->totals[1], total(p, 1));
        assert_true(s->stacks >= 1 && s->stacks <= s->samples);
        pprof_summary_free(s);
        pprof_profile_free(p);
    }
}

static void test_out_of_memory(void **state)
{
    pprof_profile *p = decode_fixture("profiles/mixed.pb.gz");
    size_t baseline;
    long n;
    (void)state;

    for (n = 0;; n++) {
        pprof_summary *s = NULL;
        pprof_error err = {0};
        int rc;

        baseline = talloc.live;
        talloc_install(n);
        rc = pprof_summarize(p, &s, &err);
        if (rc == 0) {
            pprof_summary_free(s);
            talloc_remove();
            assert_int_equal(talloc.live, baseline);
            break;
        }
        talloc_remove();
        assert_int_equal(rc, PPROF_ENOMEM);
        assert_null(s);
        assert_msg_has(err, "out of memory");
        assert_int_equal(talloc.live, baseline); /* nothing leaked */
    }
    assert_true(n > 5);
    pprof_profile_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crafted),
        cmocka_unit_test(test_fixture_invariants),
        cmocka_unit_test(test_out_of_memory),
    };
    test_timeout(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
