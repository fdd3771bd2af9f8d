/*
 * test_query.c: unit tests for src/collector/query.c (the merge options of
 * POST /v1/merge), src/common/mergeopts.c (their values and the and_combine
 * rule), src/collector/retention.c and, through query_work, mergepipe.c.
 * Issue 10.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "../../src/collector/query.c"
#include "collector/retention.h"

#define DAY_MS (86400ull * 1000)

static int parse(const char *q, mergeopts *o, char *why) {
    return query_parse(q, strlen(q), o, why, MERGEOPTS_ERR_MAX);
}

static void test_durations(void **state) {
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {{"90m", 90 * 60000ull}, {"36h", 36 * 3600000ull}, {"7d", 7 * DAY_MS},
              {"1w", 7 * DAY_MS},    {"45s", 45000},            {"1d12h", 36 * 3600000ull},
              {"0d1s", 1000}};
    static const char *const bad[] = {"", "7", "d", "7x", "-1d", "0d", "0s", "1.5h", " 7d",
                                      "7d ", "7D", "99999999999999999999d", "36501d"};
    uint64_t ms;
    char buf[32];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(mergeopts_parse_duration(ok[i].s, strlen(ok[i].s), &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mergeopts_parse_duration(bad[i], strlen(bad[i]), &ms), MERGEOPTS_EINVAL);
    /* Not NUL-terminated: only len bytes count. */
    assert_int_equal(mergeopts_parse_duration("7dXX", 2, &ms), 0);
    assert_int_equal(ms, 7 * DAY_MS);
    mergeopts_format_duration(7 * DAY_MS, buf, sizeof buf);
    assert_string_equal(buf, "7d");
    mergeopts_format_duration(36 * 3600000ull, buf, sizeof buf);
    assert_string_equal(buf, "36h");
    mergeopts_format_duration(90 * 60000ull, buf, sizeof buf);
    assert_string_equal(buf, "90m");
    mergeopts_format_duration(1500, buf, sizeof buf);
    assert_string_equal(buf, "1500ms");
}

static void test_query_values(void **state) {
    (void)state;
    mergeopts o;
    char why[MERGEOPTS_ERR_MAX], q[128];
    assert_int_equal(parse("", &o, why), 0);
    assert_false(mergeopts_any(&o));
    assert_int_equal(parse("strip_labels=true&shape=pgo&weight=equal&since=7d", &o, why), 0);
    assert_true(o.strip_labels);
    assert_int_equal(o.shape, MERGEOPTS_SHAPE_PGO);
    assert_int_equal(o.weight, MERGEOPTS_WEIGHT_EQUAL);
    assert_int_equal(o.since_ms, 7 * DAY_MS);
    assert_true(mergeopts_needs_files(&o));
    mergeopts_query(&o, q, sizeof q);
    assert_string_equal(q, "strip_labels=true&shape=pgo&weight=equal&since=7d");
    /* Percent-encoding and '+' are decoded; the first of repeated keys
     * wins; unknown keys and keys without '=' are ignored. */
    assert_int_equal(parse("sh%61pe=%70go&shape=full&x=1&flag&since=1%64", &o, why), 0);
    assert_int_equal(o.shape, MERGEOPTS_SHAPE_PGO);
    assert_int_equal(o.since_ms, DAY_MS);
    /* and_combine: exactly "true", anything else is false (Go collector). */
    assert_int_equal(parse("and_combine=TRUE", &o, why), 0);
    assert_false(o.combine);
    assert_int_equal(parse("and_combine=%zz", &o, why), 0);
    assert_false(o.combine);
    assert_int_equal(parse("and_combine=true&shape=full&weight=none&strip_labels=false", &o, why),
                     0);
    assert_true(o.combine);
    assert_false(mergeopts_any(&o));
    mergeopts_query(&o, q, sizeof q);
    assert_string_equal(q, "and_combine=true");
}

static void test_query_refusals(void **state) {
    (void)state;
    static const struct {
        const char *q, *why;
    } cases[] = {
        {"shape=PGO", "shape=\"PGO\": must be pgo or full"},
        {"shape", "shape=\"\": must be pgo or full"},
        {"weight=2", "weight=\"2\": must be equal or none"},
        {"strip_labels=1", "strip_labels=\"1\": must be true or false"},
        {"since=forever", "since=\"forever\": not a duration"},
        {"since=%0a", "since=\"\\x0a\": not a duration"},
        {"since=%4", "since: the value is not valid URL encoding or is too long"},
        {"and_combine=true&shape=pgo", "and_combine=true cannot be used with shape=pgo"},
        {"shape=pgo&and_combine=true", "and_combine=true cannot be used with shape=pgo"},
        {"and_combine=true&strip_labels=true",
         "and_combine=true cannot be used with strip_labels=true"},
        {"and_combine=true&weight=equal", "and_combine=true cannot be used with weight=equal"},
        {"and_combine=true&since=1h", "and_combine=true cannot be used with since"},
    };
    mergeopts o;
    char why[MERGEOPTS_ERR_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        why[0] = '\0';
        assert_int_equal(parse(cases[i].q, &o, why), -1);
        if (strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("%s: got \"%s\", want \"%s...\"", cases[i].q, why, cases[i].why);
    }
    /* A long value is cut in the reason, never overflowing it. */
    char longq[400] = "since=";
    memset(longq + 6, 'x', 300);
    longq[306] = '\0';
    assert_int_equal(parse(longq, &o, why), -1);
    assert_true(strlen(why) < MERGEOPTS_ERR_MAX);
}

static void test_file_times(void **state) {
    (void)state;
    uint64_t ms;
    char dir[] = "/tmp/pgof-test-query-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(mergeopts_name_time_ms("1700000000123_4.pgo", &ms), 1);
    assert_int_equal(ms, 1700000000123ull);
    assert_int_equal(mergeopts_name_time_ms("merged_1700000000999_12.pgo", &ms), 1);
    assert_int_equal(ms, 1700000000999ull);
    assert_int_equal(mergeopts_name_time_ms("/a/b/17_1.pgo", &ms), 1);
    assert_int_equal(ms, 17);
    static const char *const none[] = {"x.pgo", "17.pgo", "17_.pgo", "_1.pgo", "17_1.pb",
                                       "merged_.pgo", "17_1x.pgo", "merged_17.pgo"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        assert_int_equal(mergeopts_name_time_ms(none[i], &ms), 0);
    /* Other names: the modification time. */
    char path[256];
    snprintf(path, sizeof path, "%s/hand.pgo", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    struct timeval tv[2] = {{1600000000, 250000}, {1600000000, 250000}};
    assert_int_equal(utimes(path, tv), 0);
    assert_int_equal(mergeopts_file_time_ms(dir, "hand.pgo", &ms), 0);
    assert_int_equal(ms, 1600000000250ull);
    assert_int_equal(mergeopts_file_time_ms(NULL, path, &ms), 0);
    assert_int_equal(mergeopts_file_time_ms(dir, "missing.pgo", &ms), -ENOENT);
    assert_int_equal(mergeopts_file_time_ms(dir, "1_2.pgo", &ms), 0); /* the name wins */
    assert_int_equal(ms, 1);
    unlink(path);
    rmdir(dir);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void *read_fixture(const char *name, size_t *len) {
    char path[512];
    const char *d = getenv("PGOF_FIXTURES");
    snprintf(path, sizeof path, "%s/profiles/%s", d && *d ? d : "test/fixtures", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void test_retention_expire(void **state) {
    (void)state;
    char dir[] = "/tmp/pgof-test-retention-XXXXXX", err[256];
    assert_non_null(mkdtemp(dir));
    disk_file files[4];
    static const char *const names[] = {"1000_0.pgo", "merged_2000_1.pgo", "3000_2.pgo",
                                        "hand.pgo"};
    for (int i = 0; i < 4; i++) {
        snprintf(files[i].name, sizeof files[i].name, "%s", names[i]);
        write_file(dir, names[i], "x", 1);
    }
    size_t removed = 9;
    /* hand.pgo has a fresh mtime: kept. */
    assert_int_equal(retention_expire(dir, files, 4, 2500, &removed, err, sizeof err), 0);
    assert_int_equal(removed, 2);
    char path[512];
    snprintf(path, sizeof path, "%s/3000_2.pgo", dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/1000_0.pgo", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    /* Files already gone are not an error. */
    assert_int_equal(retention_expire(dir, files, 2, 2500, &removed, err, sizeof err), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(retention_interval_ms(30 * DAY_MS), 3600000);
    assert_int_equal(retention_interval_ms(3000), 1000);
    assert_int_equal(retention_interval_ms(60000), 6000);
    for (int i = 2; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* query_work against a directory: since selects by name, weight=equal
 * remembers each file's total, the key tracks the selection. */
static void test_query_work(void **state) {
    (void)state;
    char dir[] = "/tmp/pgof-test-qwork-XXXXXX";
    assert_non_null(mkdtemp(dir));
    size_t lfib, lmix;
    void *fib = read_fixture("fib.pb.gz", &lfib), *mix = read_fixture("mixed.pb.gz", &lmix);
    uint64_t now = 100 * DAY_MS;
    disk_file files[2];
    snprintf(files[0].name, sizeof files[0].name, "%llu_0.pgo",
             (unsigned long long)(now - 10 * DAY_MS));
    snprintf(files[1].name, sizeof files[1].name, "%llu_1.pgo",
             (unsigned long long)(now - DAY_MS / 2));
    write_file(dir, files[0].name, fib, lfib);
    write_file(dir, files[1].name, mix, lmix);
    pprof_merger *agg = pprof_merger_new();
    for (int i = 0; i < 2; i++) {
        pprof_profile *p = NULL;
        assert_int_equal(pprof_decode_mem(i ? mix : fib, i ? lmix : lfib, NULL, &p, NULL), 0);
        assert_int_equal(pprof_merger_add(agg, p, NULL), 0);
        pprof_profile_free(p);
    }
    query_worker *w = query_worker_new();
    query_job j;
    memset(&j, 0, sizeof j);
    j.opts.since_ms = DAY_MS;
    query_work(w, &j, dir, NULL, agg, files, 2, now);
    assert_int_equal(j.status, 200);
    assert_int_equal(j.nfiles, 1);
    assert_non_null(j.data);
    uint64_t key = j.key;
    free(j.data);
    /* The same selection: the cached answer is still right. */
    j.cached_key = key;
    query_work(w, &j, dir, NULL, agg, files, 2, now + 1000);
    assert_int_equal(j.status, 200);
    assert_null(j.data);
    /* The window moved past the file: a new answer (404 here). */
    query_work(w, &j, dir, NULL, agg, files, 2, now + DAY_MS);
    assert_int_equal(j.status, 404);
    assert_string_equal(j.reason, "no profiles stored within the last 1d");
    /* weight=equal: totals are read once, then remembered. */
    memset(&j, 0, sizeof j);
    j.opts.weight = MERGEOPTS_WEIGHT_EQUAL;
    query_work(w, &j, dir, NULL, agg, files, 2, now);
    assert_int_equal(j.status, 200);
    free(j.data);
    assert_int_equal(w->n, 2);
    int64_t t;
    assert_int_equal(on_total_get(w, files[0].name, &t), 1);
    assert_int_equal(t, 100);
    assert_int_equal(on_total_get(w, files[1].name, &t), 1);
    assert_int_equal(t, 195);
    assert_int_equal(on_total_get(w, "other.pgo", &t), 0);
    /* shape=pgo alone comes from the aggregate, no file read: it works
     * with the files gone. */
    char path[512];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        unlink(path);
    }
    memset(&j, 0, sizeof j);
    j.opts.shape = MERGEOPTS_SHAPE_PGO;
    query_work(w, &j, dir, NULL, agg, files, 2, now);
    assert_int_equal(j.status, 200);
    free(j.data);
    /* ...while since must read them: a missing file is a 500 naming it. */
    memset(&j, 0, sizeof j);
    j.opts.since_ms = 30 * DAY_MS;
    query_work(w, &j, dir, NULL, agg, files, 2, now);
    assert_int_equal(j.status, 500);
    assert_non_null(strstr(j.reason, files[0].name));
    /* Nothing stored: 404. */
    pprof_merger *empty = pprof_merger_new();
    memset(&j, 0, sizeof j);
    j.opts.shape = MERGEOPTS_SHAPE_PGO;
    query_work(w, &j, dir, NULL, empty, files, 0, now);
    assert_int_equal(j.status, 404);
    pprof_merger_free(empty);
    query_worker_free(w);
    pprof_merger_free(agg);
    free(fib);
    free(mix);
    rmdir(dir);
}

static void test_query_cache(void **state) {
    (void)state;
    query_cache c;
    memset(&c, 0, sizeof c);
    mergeopts o[QUERY_CACHE_SLOTS + 1];
    store_blob *b[QUERY_CACHE_SLOTS + 1];
    for (int i = 0; i <= QUERY_CACHE_SLOTS; i++) {
        mergeopts_init(&o[i]);
        o[i].since_ms = (uint64_t)(i + 1) * 1000;
        b[i] = calloc(1, sizeof *b[i]);
        b[i]->refs = 1;
        b[i]->data = malloc(1);
        b[i]->len = 1;
    }
    uint64_t key;
    assert_null(query_cache_get(&c, &o[0], &key));
    assert_int_equal(key, 0);
    for (int i = 0; i < QUERY_CACHE_SLOTS; i++)
        query_cache_put(&c, &o[i], 100 + (uint64_t)i, b[i]);
    store_blob *got = query_cache_get(&c, &o[0], &key); /* o[0] is now the newest */
    assert_ptr_equal(got, b[0]);
    assert_int_equal(key, 100);
    store_blob_unref(got);
    /* One more: the least recently used (o[1]) goes. */
    query_cache_put(&c, &o[QUERY_CACHE_SLOTS], 200, b[QUERY_CACHE_SLOTS]);
    assert_null(query_cache_get(&c, &o[1], &key));
    got = query_cache_get(&c, &o[QUERY_CACHE_SLOTS], &key);
    assert_ptr_equal(got, b[QUERY_CACHE_SLOTS]);
    store_blob_unref(got);
    /* Replacing an answer keeps one slot per query. */
    query_cache_put(&c, &o[0], 300, b[2]);
    got = query_cache_get(&c, &o[0], &key);
    assert_ptr_equal(got, b[2]);
    assert_int_equal(key, 300);
    store_blob_unref(got);
    query_cache_clear(&c);
    for (int i = 0; i <= QUERY_CACHE_SLOTS; i++)
        store_blob_unref(b[i]); /* the last reference of each */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),     cmocka_unit_test(test_query_values),
        cmocka_unit_test(test_query_refusals), cmocka_unit_test(test_file_times),
        cmocka_unit_test(test_retention_expire), cmocka_unit_test(test_query_work),
        cmocka_unit_test(test_query_cache),
    };
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
