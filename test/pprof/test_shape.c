/*
 * test_shape.c: src/pprof/shape.c and weight.c (issue 10).
 *
 * The central claim: a shape=pgo aggregate gives Go's compiler exactly the
 * weighted call graph of the full merge. It is checked by computing, with our
 * own decoder and the compiler's rule (tools/pgo_edges.h), the edge table
 * and node weights of both, for the real fixture profiles (Go 1.19 ones
 * without start lines, Go 1.23 ones with them, alone and merged) and for a
 * crafted profile with every corner the rule has (recursion at one line,
 * one location twice, inlined frames, a leaf whose function is also its
 * caller, frames without lines, a zero count). Also: strip_labels equals
 * merging label-free inputs, the shape is as small as it says, weight=equal
 * gives every input exactly the same total, and every allocation failure.
 */
#include "pprof/helpers.h"
#include "pprof/tools/pgo_edges.h"

static const char *const go123_fixtures[] = {
    "pgo/labels-go123.pb.gz",
    "pgo/mixed-go123.pb.gz",
    "pgo/pgoprog-go123.pb.gz",
};
#define N_GO123 (sizeof(go123_fixtures) / sizeof(go123_fixtures[0]))

static size_t encoded_size(const pprof_merger *m)
{
    pprof_error err = {0, ""};
    uint8_t *buf;
    size_t len;

    if (pprof_merger_encode(m, &buf, &len, &err))
        fail_msg("encode: %s", err.msg);
    pprof__free(buf);
    return len;
}

static pprof_merger *reshaped(const pprof_merger *m, unsigned flags)
{
    pprof_merger *r = NULL;
    pprof_error err = {0, ""};

    if (pprof_merger_reshape(m, flags, &r, &err))
        fail_msg("reshape: %s", err.msg);
    return r;
}

/* The compiler's view of an aggregate, through encode and decode. */
static char *edges_of(const pprof_merger *m)
{
    pprof_profile *p = roundtrip(m);
    const char *why = NULL;
    char *t = pgo_edges_text(p, &why);

    if (!t)
        fail_msg("edges: %s", why);
    pprof_profile_free(p);
    return t;
}

/* Asserts full, strip_labels and shape=pgo of m give the same edge table;
 * returns the table (owned). */
static char *assert_same_graph(const pprof_merger *m, const char *what)
{
    pprof_merger *pgo = reshaped(m, PPROF_RESHAPE_PGO);
    pprof_merger *strip = reshaped(m, PPROF_RESHAPE_STRIP_LABELS);
    char *full = edges_of(m), *a = edges_of(pgo), *b = edges_of(strip);

    if (strcmp(full, a) != 0)
        fail_msg("%s: shape=pgo changes the compiler's graph:\n--- full\n%s--- pgo\n%s", what,
                 full, a);
    if (strcmp(full, b) != 0)
        fail_msg("%s: strip_labels changes the compiler's graph", what);
    assert_true(encoded_size(pgo) <= encoded_size(m));
    free(a);
    free(b);
    pprof_merger_free(pgo);
    pprof_merger_free(strip);
    return full;
}

static pprof_merger *merge_fixtures(const char *const *names, size_t n)
{
    pprof_merger *m = pprof_merger_new();
    size_t i;

    for (i = 0; i < n; i++) {
        pprof_profile *p = decode_fixture(names[i]);
        add_ok(m, p);
        pprof_profile_free(p);
    }
    return m;
}

static void test_pgo_same_graph_on_fixtures(void **state)
{
    const char *all[N_CPU_FIXTURES + N_GO123];
    size_t i;
    char *t;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_merger *m = merge_fixtures(&cpu_fixtures[i], 1);
        free(assert_same_graph(m, cpu_fixtures[i]));
        pprof_merger_free(m);
        all[i] = cpu_fixtures[i];
    }
    for (i = 0; i < N_GO123; i++) {
        pprof_merger *m = merge_fixtures(&go123_fixtures[i], 1);
        t = assert_same_graph(m, go123_fixtures[i]);
        /* Go 1.20+ profiles carry start lines: offsets are real. */
        assert_non_null(strstr(t, "start_lines yes"));
        free(t);
        pprof_merger_free(m);
        all[N_CPU_FIXTURES + i] = go123_fixtures[i];
    }
    {
        pprof_merger *m = merge_fixtures(go123_fixtures, N_GO123);
        free(assert_same_graph(m, "the Go 1.23 fixtures merged"));
        pprof_merger_free(m);
        m = merge_fixtures(all, N_CPU_FIXTURES + N_GO123);
        t = assert_same_graph(m, "every fixture merged");
        assert_true(strlen(t) > 5000); /* a real graph, not an empty one */
        free(t);
        pprof_merger_free(m);
    }
}

/* ---- a crafted profile with the rule's corners ---------------------------- */

static uint64_t loc(pprof_builder *b, uint64_t map, uint64_t addr, const pprof_builder_line *l,
                    size_t n)
{
    pprof_error err = {0, ""};
    uint64_t id = 0;

    if (pprof_builder_add_location(b, map, addr, l, n, &id, &err))
        fail_msg("location: %s", err.msg);
    return id;
}

static void smp(pprof_builder *b, const uint64_t *ids, size_t n, int64_t count)
{
    pprof_error err = {0, ""};

    if (pprof_builder_add_sample(b, ids, n, count, count * 10000000, &err))
        fail_msg("sample: %s", err.msg);
}

#define LN(fn, start, line) {fn, NULL, "/src/" fn ".go", start, line}

static pprof_profile *corner_profile(void)
{
    pprof_builder *b = pprof_builder_new_cpu(10000000, 1, 1000000000);
    pprof_error err = {0, ""};
    pprof_profile *p = NULL;
    uint64_t map = 0;
    const pprof_builder_line main30[] = {LN("main.main", 20, 30)};
    const pprof_builder_line main31[] = {LN("main.main", 20, 31)};
    const pprof_builder_line f10[] = {LN("main.f", 5, 10)};
    const pprof_builder_line f12[] = {LN("main.f", 5, 12)};
    const pprof_builder_line g5[] = {LN("main.g", 2, 5)};
    const pprof_builder_line g6[] = {LN("main.g", 2, 6)};
    const pprof_builder_line inl[] = {LN("main.h", 40, 42), LN("main.f", 5, 15)};
    const pprof_builder_line selfinl[] = {LN("main.f", 5, 9), LN("main.f", 5, 11)};
    const pprof_builder_line k[] = {LN("main.k", 50, 55)};
    uint64_t l_main30, l_main31, l_f10a, l_f10b, l_f12a, l_g5, l_g6, l_inl, l_self, l_k, l_none,
        l_none2, l_f10c;

    assert_non_null(b);
    if (pprof_builder_add_mapping(b, 0x400000, 0x800000, 0, "/bin/app", "abc", &map, &err))
        fail_msg("mapping: %s", err.msg);
    l_main30 = loc(b, map, 0x401000, main30, 1);
    l_main31 = loc(b, map, 0x401010, main31, 1);
    l_f10a = loc(b, map, 0x402000, f10, 1);
    l_f10b = loc(b, map, 0x402008, f10, 1); /* same line, another address */
    l_f10c = loc(b, map, 0x40200c, f10, 1);
    l_f12a = loc(b, map, 0x402000, f12, 1); /* another line at f10a's address */
    l_g5 = loc(b, map, 0x403000, g5, 1);
    l_g6 = loc(b, map, 0x403004, g6, 1);
    l_inl = loc(b, map, 0x404000, inl, 2);
    l_self = loc(b, map, 0x405000, selfinl, 2);
    l_k = loc(b, map, 0x406000, k, 1);
    l_none = loc(b, map, 0x407000, NULL, 0);
    l_none2 = loc(b, map, 0x407008, NULL, 0);
    {
        /* Recursion at one line, two addresses: an f -> f edge. */
        const uint64_t s1[] = {l_f10b, l_f10a, l_main30};
        /* One location twice: one node, no edge between them. */
        const uint64_t s2[] = {l_g5, l_g5, l_main30};
        /* Two lines at one address: distinct nodes sharing an address. */
        const uint64_t s3[] = {l_f12a, l_f10a, l_main31};
        /* The leaf's function is its caller's, at the caller's address. */
        const uint64_t s4[] = {l_f10a, l_f12a};
        /* Inlined frames in the leaf and in the caller. */
        const uint64_t s5[] = {l_inl, l_self, l_main30};
        const uint64_t s6[] = {l_self, l_inl};
        /* Frames without lines. */
        const uint64_t s7[] = {l_none, l_none2, l_main30};
        const uint64_t s8[] = {l_k, l_none};
        /* One frame only. */
        const uint64_t s9[] = {l_k};
        /* Deep stacks sharing their two innermost frames. */
        const uint64_t s10[] = {l_g6, l_f10c, l_k, l_main30};
        const uint64_t s11[] = {l_g6, l_f10c, l_main31};
        const uint64_t s12[] = {l_g5, l_f10c, l_main31};
        smp(b, s1, 3, 3);
        smp(b, s2, 3, 2);
        smp(b, s3, 3, 5);
        smp(b, s4, 2, 1);
        smp(b, s5, 3, 7);
        smp(b, s6, 2, 2);
        smp(b, s7, 3, 4);
        smp(b, s8, 2, 1);
        smp(b, s9, 1, 6);
        smp(b, s10, 4, 3);
        smp(b, s11, 3, 2);
        smp(b, s12, 3, 9);
        /* A count of 0 with CPU time: skipped by the compiler, kept here. */
        if (pprof_builder_add_sample(b, s11, 3, 0, 12345, &err))
            fail_msg("sample: %s", err.msg);
    }
    if (pprof_builder_finish(b, &p, &err))
        fail_msg("finish: %s", err.msg);
    pprof_builder_free(b);
    return p;
}

static void test_pgo_same_graph_corners(void **state)
{
    pprof_profile *p = corner_profile();
    pprof_merger *m = pprof_merger_new();
    char *t;

    (void)state;
    add_ok(m, p);
    add_ok(m, p);
    t = assert_same_graph(m, "the crafted corners");
    if (getenv("SHOW_EDGES"))
        fputs(t, stderr);
    /* The corners are really in the table (weights: each sample twice).
     * Recursion at one line from two addresses (s1), and two lines at one
     * address (s3): f -> f at offset 5. */
    assert_non_null(strstr(t, "edge main.f 5 main.f 16\n"));
    /* The leaf's caller is its own function (s4). */
    assert_non_null(strstr(t, "edge main.f 7 main.f 2\n"));
    /* One location twice is one node: no g -> g edge (s2). */
    assert_null(strstr(t, "edge main.g"));
    /* Inlined frames: h inlined into f at line 15, into the leaf (s5, s6). */
    assert_non_null(strstr(t, "edge main.f 10 main.h 18\n"));
    assert_non_null(strstr(t, "edge main.f 4 main.f 14\n"));
    /* Frames without lines (s7, s8). */
    assert_non_null(strstr(t, "edge  0  8\n"));
    assert_non_null(strstr(t, "edge  0 main.k 2\n"));
    /* Only the two innermost frames count: main is never a caller. */
    assert_null(strstr(t, "edge main.main"));
    assert_non_null(strstr(t, "start_lines yes"));
    free(t);
    pprof_merger_free(m);
    pprof_profile_free(p);
}

/* The shape keeps only what it says. */
static void test_pgo_shape_is_reduced(void **state)
{
    pprof_merger *m, *pgo;
    pprof_profile *full, *small;
    size_t i;

    (void)state;
    m = merge_fixtures(cpu_fixtures, N_CPU_FIXTURES);
    pgo = reshaped(m, PPROF_RESHAPE_PGO);
    full = roundtrip(m);
    small = roundtrip(pgo);
    assert_int_equal(pprof_check_cpu(small, NULL), 0);
    assert_int_equal(small->mappings.n, 0);
    assert_int_equal(small->labels.n, 0);
    assert_int_equal(small->comments.n, 0);
    assert_true(small->samples.n < full->samples.n);
    assert_true(small->locations.n < full->locations.n);
    for (i = 0; i < small->samples.n; i++)
        assert_true(PPROF__AT(small->samples, pprof__sample, i).nloc <= 2);
    for (i = 0; i < small->locations.n; i++) {
        uint64_t a = PPROF__AT(small->locations, pprof__location, i).address;
        assert_true(a == 1 || a == 2);
    }
    for (i = 0; i < small->functions.n; i++) {
        const pprof__function *f = &PPROF__AT(small->functions, pprof__function, i);
        assert_true(pprof__str_eq(small, f->filename, ""));
        assert_true(pprof__str_eq(small, f->system_name, ""));
    }
    /* Totals of both values are those of the full merge. */
    assert_int_equal(total(small, 0), total(full, 0));
    assert_int_equal(total(small, 1), total(full, 1));
    assert_int_equal(small->duration_nanos, full->duration_nanos);
    assert_int_equal(small->period, full->period);
    pprof_profile_free(full);
    pprof_profile_free(small);
    pprof_merger_free(pgo);
    pprof_merger_free(m);
}

/* ---- strip_labels --------------------------------------------------------- */

/* One sorted line per sample: frames (function:line, leaf first), labels,
 * values. Owned. */
static char *sample_lines(const pprof_profile *p)
{
    pe_text t = {0};
    size_t i, j, k, n = 0;
    char *out, *o;

    for (i = 0; i < p->samples.n; i++) {
        const pprof__sample *s = &PPROF__AT(p->samples, pprof__sample, i);
        char *line = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&line, &len);
        for (j = 0; j < s->nloc; j++) {
            const pprof__location *l = &PPROF__AT(
                p->locations, pprof__location, PPROF__AT(p->locids, uint64_t, s->loc_off + j));
            for (k = 0; k < l->nline; k++) {
                const pprof__line *ln = &PPROF__AT(p->lines, pprof__line, l->line_off + k);
                uint32_t nl;
                const char *name = pprof__str(
                    p, PPROF__AT(p->functions, pprof__function, ln->function).name, &nl);
                fprintf(f, "%.*s:%lld;", (int)nl, name, (long long)ln->line);
            }
        }
        fputs(" |", f);
        for (j = 0; j < s->nlabel; j++) {
            const pprof__label *l = &PPROF__AT(p->labels, pprof__label, s->label_off + j);
            uint32_t a, b;
            const char *ks = pprof__str(p, l->key, &a), *vs = pprof__str(p, l->str, &b);
            fprintf(f, "%.*s=%.*s/%lld;", (int)a, ks, (int)b, vs, (long long)l->num);
        }
        fputs(" |", f);
        for (j = 0; j < s->nval; j++)
            fprintf(f, " %lld", (long long)PPROF__AT(p->values, int64_t, s->val_off + j));
        fclose(f);
        pe_line(&t, "%s", line);
        free(line);
    }
    qsort(t.lines, t.n, sizeof(char *), pe_strcmp);
    for (i = 0; i < t.n; i++)
        n += strlen(t.lines[i]) + 1;
    out = o = malloc(n + 1);
    assert_non_null(out);
    for (i = 0; i < t.n; i++) {
        o += sprintf(o, "%s\n", t.lines[i]);
        free(t.lines[i]);
    }
    *o = '\0';
    free(t.lines);
    return out;
}

static void test_strip_labels_is_merging_without_labels(void **state)
{
    static const char *const names[] = {"profiles/labels.pb.gz", "profiles/mixed.pb.gz",
                                        "pgo/labels-go123.pb.gz", "profiles/labels.pb.gz"};
    pprof_merger *m = pprof_merger_new(), *bare = pprof_merger_new(), *strip;
    pprof_profile *a, *b;
    char *ta, *tb;
    size_t i, j, labelled = 0;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        pprof_profile *p = decode_fixture(names[i]);
        if (i == 3) {
            /* The same stacks again under other label values: stripping
             * must merge them with the first copy's. */
            for (j = 0; j < p->labels.n; j++)
                PPROF__AT(p->labels, pprof__label, j).str =
                    PPROF__AT(p->labels, pprof__label, j).key;
        }
        add_ok(m, p);
        for (j = 0; j < p->samples.n; j++) {
            labelled += PPROF__AT(p->samples, pprof__sample, j).nlabel != 0;
            PPROF__AT(p->samples, pprof__sample, j).nlabel = 0;
        }
        add_ok(bare, p);
        pprof_profile_free(p);
    }
    assert_true(labelled > 0);
    strip = reshaped(m, PPROF_RESHAPE_STRIP_LABELS);
    assert_true(pprof_merger_samples(strip) < pprof_merger_samples(m));
    assert_int_equal(pprof_merger_samples(strip), pprof_merger_samples(bare));
    a = roundtrip(strip);
    b = roundtrip(bare);
    ta = sample_lines(a);
    tb = sample_lines(b);
    assert_string_equal(ta, tb);
    assert_int_equal(a->labels.n, 0);
    assert_int_equal(a->mappings.n, b->mappings.n);
    assert_int_equal(a->duration_nanos, b->duration_nanos);
    assert_int_equal(a->time_nanos, b->time_nanos);
    free(ta);
    free(tb);
    pprof_profile_free(a);
    pprof_profile_free(b);
    pprof_merger_free(strip);
    pprof_merger_free(bare);
    pprof_merger_free(m);
}

/* ---- weight=equal -------------------------------------------------------- */

/* A profile ten times as long as mixed.pb.gz: it merged ten times. */
static pprof_profile *long_profile(void)
{
    static const char *const ten[10] = {
        "profiles/mixed.pb.gz", "profiles/mixed.pb.gz", "profiles/mixed.pb.gz",
        "profiles/mixed.pb.gz", "profiles/mixed.pb.gz", "profiles/mixed.pb.gz",
        "profiles/mixed.pb.gz", "profiles/mixed.pb.gz", "profiles/mixed.pb.gz",
        "profiles/mixed.pb.gz"};
    pprof_merger *m = merge_fixtures(ten, 10);
    pprof_profile *p = roundtrip(m);

    pprof_merger_free(m);
    return p;
}

static void test_weight_equal_two_lengths(void **state)
{
    pprof_profile *shortp = decode_fixture("profiles/fib.pb.gz");
    pprof_profile *longp = long_profile();
    pprof_profile *orig_short = decode_fixture("profiles/fib.pb.gz");
    pprof_error err = {0, ""};
    int64_t ts, tl, target, cpu_short;
    pprof_merger *m = pprof_merger_new();
    pprof_profile *merged;
    size_t i;

    (void)state;
    /* 1 s against 11.6 s of profile. */
    assert_true(longp->duration_nanos > 10 * shortp->duration_nanos);
    assert_int_equal(pprof_weight_index(shortp), 0); /* samples/count */
    assert_int_equal(pprof_profile_total(shortp, &ts, &err), 0);
    assert_int_equal(pprof_profile_total(longp, &tl, &err), 0);
    /* Very different lengths: the long one has many times the samples. */
    assert_true(tl > 10 * ts);
    target = tl;
    cpu_short = total(shortp, 1);
    assert_int_equal(pprof_profile_scale(shortp, target, &err), 0);
    assert_int_equal(pprof_profile_scale(longp, target, &err), 0);
    /* Exactly equal contributions of the weight value... */
    assert_int_equal(total(shortp, 0), target);
    assert_int_equal(total(longp, 0), target);
    /* ...and cpu scaled by the same factor, rounded half up. */
    assert_int_equal(total(shortp, 1),
                     (int64_t)(((__int128)cpu_short * target + ts / 2) / ts));
    /* Each value is within one of its exact share. */
    for (i = 0; i < shortp->samples.n; i++) {
        const pprof__sample *s = &PPROF__AT(shortp->samples, pprof__sample, i);
        int64_t v = PPROF__AT(orig_short->values, int64_t,
                              PPROF__AT(orig_short->samples, pprof__sample, i).val_off);
        __int128 exact = (__int128)v * target;
        __int128 got = (__int128)PPROF__AT(shortp->values, int64_t, s->val_off) * ts;
        assert_true(got - exact < ts && exact - got < ts);
    }
    add_ok(m, shortp);
    add_ok(m, longp);
    merged = roundtrip(m);
    assert_int_equal(total(merged, 0), 2 * target);
    /* Scaling to its own total changes nothing. */
    assert_int_equal(pprof_profile_scale(longp, target, &err), 0);
    assert_int_equal(total(longp, 0), target);
    pprof_profile_free(merged);
    pprof_merger_free(m);
    pprof_profile_free(shortp);
    pprof_profile_free(longp);
    pprof_profile_free(orig_short);
}

static void test_weight_refusals(void **state)
{
    pprof_builder *b = pprof_builder_new_cpu(10000000, 1, 1);
    pprof_error err = {0, ""};
    pprof_profile *p = NULL;
    const pprof_builder_line l[] = {LN("main.f", 1, 2)};
    uint64_t id;
    int64_t t;

    (void)state;
    id = loc(b, 0, 0x10, l, 1);
    smp(b, &id, 1, 0);
    assert_int_equal(pprof_builder_finish(b, &p, &err), 0);
    pprof_builder_free(b);
    /* A total of 0: left as it is. */
    assert_int_equal(pprof_profile_total(p, &t, &err), 0);
    assert_int_equal(t, 0);
    assert_int_equal(pprof_profile_scale(p, 100, &err), 0);
    assert_int_equal(total(p, 0), 0);
    /* A negative value is refused, not scaled. */
    PPROF__AT(p->values, int64_t, 0) = -5;
    assert_int_equal(pprof_profile_scale(p, 100, &err), PPROF_EINVALID);
    assert_msg_has(err, "negative");
    assert_int_equal(pprof_profile_total(p, &t, &err), PPROF_EINVALID);
    assert_int_equal(pprof_profile_scale(p, -1, &err), PPROF_EINVALID);
    pprof_profile_free(p);
}

/* ---- failures ----------------------------------------------------------- */

static void test_reshape_empty(void **state)
{
    pprof_merger *m = pprof_merger_new(), *r = (pprof_merger *)1;
    pprof_error err = {0, ""};

    (void)state;
    assert_int_equal(pprof_merger_reshape(m, PPROF_RESHAPE_PGO, &r, &err), PPROF_EEMPTY);
    assert_null(r);
    pprof_merger_free(m);
}

/* Every allocation of a reshape fails in turn: ENOMEM, nothing leaked. */
static void test_reshape_alloc_failures(void **state)
{
    static const unsigned flags[] = {PPROF_RESHAPE_PGO, PPROF_RESHAPE_STRIP_LABELS};
    pprof_merger *m;
    size_t f;

    (void)state;
    m = merge_fixtures(cpu_fixtures, 3);
    for (f = 0; f < 2; f++) {
        long n;
        for (n = 0;; n++) {
            pprof_merger *r = NULL;
            pprof_error err = {0, ""};
            size_t live;
            int rc;
            talloc_install(-1);
            live = talloc.live;
            talloc.fail_after = n;
            rc = pprof_merger_reshape(m, flags[f], &r, &err);
            talloc.fail_after = -1;
            if (rc == 0) {
                pprof_merger_free(r);
                talloc_remove();
                assert_int_equal(talloc.live, live);
                break;
            }
            assert_int_equal(rc, PPROF_ENOMEM);
            assert_null(r);
            talloc_remove();
            assert_int_equal(talloc.live, live);
        }
        assert_true(n > 10);
    }
    pprof_merger_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pgo_same_graph_on_fixtures),
        cmocka_unit_test(test_pgo_same_graph_corners),
        cmocka_unit_test(test_pgo_shape_is_reduced),
        cmocka_unit_test(test_strip_labels_is_merging_without_labels),
        cmocka_unit_test(test_weight_equal_two_lengths),
        cmocka_unit_test(test_weight_refusals),
        cmocka_unit_test(test_reshape_empty),
        cmocka_unit_test(test_reshape_alloc_failures),
    };
    test_timeout(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
