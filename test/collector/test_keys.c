/*
 * test_keys.c: unit tests for src/collector/keys.c (key files, constant-time
 * match, bearer parsing). Includes the .c to reach its statics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/collector/keys.c"

#include <stdio.h>
#include <stdlib.h>

static keyset *parse_ok(const char *text) {
    keyset *ks = NULL;
    char err[256] = "";
    int rc = keys_parse(text, strlen(text), &ks, err, sizeof err);
    if (rc != 0)
        fail_msg("keys_parse failed: %d %s", rc, err);
    return ks;
}

static void test_parse_trims_and_skips(void **state) {
    (void)state;
    keyset *ks = parse_ok("# comment\n\n  alpha  \r\n\tbeta\n#gamma\n   \ndelta");
    assert_int_equal(keys_count(ks), 3);
    assert_int_equal(keys_match(ks, "alpha", 5), 1);
    assert_int_equal(keys_match(ks, "beta", 4), 1);
    assert_int_equal(keys_match(ks, "delta", 5), 1);
    assert_int_equal(keys_match(ks, "gamma", 5), 0);
    assert_int_equal(keys_match(ks, "#gamma", 6), 0);
    assert_int_equal(keys_match(ks, "alph", 4), 0);
    assert_int_equal(keys_match(ks, "alphaa", 6), 0);
    assert_int_equal(keys_match(ks, "", 0), 0);
    keys_free(ks);
}

static void test_parse_errors(void **state) {
    (void)state;
    keyset *ks = NULL;
    char err[256];
    assert_int_equal(keys_parse("# only\n\n", 8, &ks, err, sizeof err), UV_EINVAL);
    assert_non_null(strstr(err, "no key"));
    char *big = malloc(KEYS_MAX_LEN + 10);
    memset(big, 'k', KEYS_MAX_LEN + 1);
    big[KEYS_MAX_LEN + 1] = '\0';
    assert_int_equal(keys_parse(big, strlen(big), &ks, err, sizeof err), UV_EINVAL);
    assert_non_null(strstr(err, "longer than"));
    free(big);
    assert_null(ks);
}

static void test_match_long_probe(void **state) {
    (void)state;
    keyset *ks = parse_ok("short\n");
    char probe[KEYS_MAX_LEN * 2];
    memset(probe, 's', sizeof probe);
    assert_int_equal(keys_match(ks, probe, sizeof probe), 0);
    /* A stored key of exactly KEYS_MAX_LEN bytes matches only itself. */
    char line[KEYS_MAX_LEN + 2];
    memset(line, 'x', KEYS_MAX_LEN);
    line[KEYS_MAX_LEN] = '\n';
    line[KEYS_MAX_LEN + 1] = '\0';
    keyset *ks2 = parse_ok(line);
    assert_int_equal(keys_match(ks2, line, KEYS_MAX_LEN), 1);
    assert_int_equal(keys_match(ks2, line, KEYS_MAX_LEN + 1), 0);
    keys_free(ks);
    keys_free(ks2);
}

static void test_bearer(void **state) {
    (void)state;
    const char *k;
    size_t n;
#define OK(s, want)                                                            \
    do {                                                                       \
        assert_int_equal(keys_parse_bearer(s, strlen(s), &k, &n), 0);          \
        assert_int_equal(n, strlen(want));                                     \
        assert_memory_equal(k, want, n);                                       \
    } while (0)
    OK("Bearer abc", "abc");
    OK("bearer abc", "abc");
    OK("BEARER \t abc  ", "abc");
    assert_int_equal(keys_parse_bearer("Bearer", 6, &k, &n), UV_EINVAL);
    assert_int_equal(keys_parse_bearer("Bearer ", 7, &k, &n), UV_EINVAL);
    assert_int_equal(keys_parse_bearer("Bearerabc", 9, &k, &n), UV_EINVAL);
    assert_int_equal(keys_parse_bearer("Basic abc", 9, &k, &n), UV_EINVAL);
    assert_int_equal(keys_parse_bearer("Bearer a b", 10, &k, &n), UV_EINVAL);
#undef OK
}

static void test_load_file(void **state) {
    (void)state;
    char path[] = "/tmp/pgof-test-keys-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "one\ntwo\n", 8), 8);
    close(fd);
    keyset *ks = NULL;
    char err[512];
    assert_int_equal(keys_load_file(path, &ks, err, sizeof err), 0);
    assert_int_equal(keys_count(ks), 2);
    keys_free(ks);
    unlink(path);
    ks = NULL;
    assert_int_equal(keys_load_file(path, &ks, err, sizeof err), UV_ENOENT);
    assert_non_null(strstr(err, path));
    assert_null(ks);
    assert_true(keys_load_file("/", &ks, err, sizeof err) < 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_trims_and_skips),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_match_long_probe),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
