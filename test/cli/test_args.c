/*
 * test_args.c: src/cli/args.c: duration and number parsing, base URL
 * checks and joining, bind address to healthcheck URL, byte formatting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/args.c"

static void test_durations(void **state)
{
    static const struct { const char *in; long ms; } ok[] = {
        {"5", 5000}, {"2.5", 2500}, {"500ms", 500}, {"3s", 3000}, {"2m", 120000},
        {"0", 0}, {"0.0005", 1}, {"86400", 86400000},
    };
    static const char *const bad[] = {"", "-1", "+1", " 1", "5x", "1h", "s", "nan", "inf",
                                      "86401", "1e9", "5 s"};
    long ms;
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        ms = -7;
        assert_int_equal(cli_parse_duration_ms(ok[i].in, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms = -7;
        if (cli_parse_duration_ms(bad[i], &ms) != CLI_EINVAL)
            fail_msg("duration '%s' was accepted as %ld ms", bad[i], ms);
        assert_int_equal(ms, -7);
    }
    assert_int_equal(cli_parse_duration_ms(NULL, &ms), CLI_EINVAL);
}

static void test_uints(void **state)
{
    unsigned long v = 99;
    (void)state;
    assert_int_equal(cli_parse_uint("0", 20, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(cli_parse_uint("20", 20, &v), 0);
    assert_int_equal(v, 20);
    v = 99;
    assert_int_equal(cli_parse_uint("21", 20, &v), CLI_EINVAL);
    assert_int_equal(cli_parse_uint("-1", 20, &v), CLI_EINVAL);
    assert_int_equal(cli_parse_uint(" 1", 20, &v), CLI_EINVAL);
    assert_int_equal(cli_parse_uint("1x", 20, &v), CLI_EINVAL);
    assert_int_equal(cli_parse_uint("", 20, &v), CLI_EINVAL);
    assert_int_equal(cli_parse_uint("99999999999999999999999", ~0UL, &v), CLI_EINVAL);
    assert_int_equal(v, 99);
}

static void test_join_url(void **state)
{
    static const struct { const char *base, *want; } ok[] = {
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/merge"},
        {"http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/merge"},
        {"https://pgo.example.com//", "https://pgo.example.com/v1/merge"},
        {"https://example.com/pgo", "https://example.com/pgo/v1/merge"},
        {"HTTP://[::1]:9", "HTTP://[::1]:9/v1/merge"},
    };
    static const struct { const char *base, *why; } bad[] = {
        {"", "empty"},
        {"127.0.0.1:8080", "not a URL"},
        {"ftp://example.com", "only http:// and https://"},
        {"file:///etc/passwd", "only http:// and https://"},
        {"http://h/?a=1", "without '?'"},
        {"http://h/#x", "without '?'"},
        {"http://", "not a URL"},
    };
    char err[CLI_ERR_MAX], *url;
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(cli_join_url(ok[i].base, "/v1/merge", &url, err), 0);
        assert_string_equal(url, ok[i].want);
        free(url);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        url = (char *)"untouched";
        assert_int_equal(cli_join_url(bad[i].base, "/v1/merge", &url, err), CLI_EINVAL);
        assert_null(url);
        if (!strstr(err, bad[i].why))
            fail_msg("'%s': message \"%s\" lacks \"%s\"", bad[i].base, err, bad[i].why);
    }
}

static void test_url_from_bind(void **state)
{
    static const struct { const char *bind, *want; } ok[] = {
        {NULL, "http://127.0.0.1:8080"},
        {"", "http://127.0.0.1:8080"},
        {":8080", "http://127.0.0.1:8080"},
        {"0.0.0.0:9000", "http://127.0.0.1:9000"},
        {"[::]:7", "http://[::1]:7"},
        {"10.1.2.3:80", "http://10.1.2.3:80"},
        {"[::1]:80", "http://[::1]:80"},
        {"localhost:1", "http://localhost:1"},
    };
    static const char *const bad[] = {"8080", "h:0", "h:65536", "h:x", "::1:80", "[::1:80"};
    char out[128];
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(cli_url_from_bind(ok[i].bind, out, sizeof(out)), 0);
        assert_string_equal(out, ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (cli_url_from_bind(bad[i], out, sizeof(out)) != CLI_EINVAL)
            fail_msg("bind address '%s' was accepted as %s", bad[i], out);
}

static void test_fmt_bytes(void **state)
{
    char b[32];
    (void)state;
    assert_string_equal(cli_fmt_bytes(0, b, sizeof(b)), "0 B");
    assert_string_equal(cli_fmt_bytes(1023, b, sizeof(b)), "1023 B");
    assert_string_equal(cli_fmt_bytes(1024, b, sizeof(b)), "1.0 KiB");
    assert_string_equal(cli_fmt_bytes(1378, b, sizeof(b)), "1.3 KiB");
    assert_string_equal(cli_fmt_bytes((uint64_t)3 << 30, b, sizeof(b)), "3.0 GiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_uints),
        cmocka_unit_test(test_join_url),
        cmocka_unit_test(test_url_from_bind),
        cmocka_unit_test(test_fmt_bytes),
    };
    alarm(30);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
