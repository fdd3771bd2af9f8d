/*
 * test_http.c: src/cli/http.c: the retry policy, the back-off schedule, the
 * failure sentences (which name the key's source and never the key), and a
 * real transfer to a closed loopback port through the retry loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cli/args.c"
#include "cli/http.c"

const char *cli_command = "test";
static int errors_printed;

void cli_error(const char *fmt, ...)
{
    (void)fmt;
    errors_printed++;
}

void cli_usage_error(const char *fmt, ...)
{
    (void)fmt;
}

static cli_http_result answer(long status, const char *reason)
{
    cli_http_result r;
    memset(&r, 0, sizeof(r));
    r.curl_code = CURLE_OK;
    r.status = status;
    snprintf(r.reason, sizeof(r.reason), "%s", reason);
    return r;
}

static cli_http_result failure(CURLcode c, const char *msg)
{
    cli_http_result r;
    memset(&r, 0, sizeof(r));
    r.curl_code = c;
    snprintf(r.curl_msg, sizeof(r.curl_msg), "%s", msg);
    return r;
}

static void test_retry_policy(void **state)
{
    static const long retry[] = {500, 502, 503, 504, 429};
    static const long final[] = {200, 204, 400, 401, 403, 404, 413, 301};
    static const CURLcode cretry[] = {CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT,
                                      CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING, CURLE_RECV_ERROR,
                                      CURLE_SEND_ERROR, CURLE_COULDNT_RESOLVE_HOST};
    static const CURLcode cfinal[] = {CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR,
                                      CURLE_WRITE_ERROR, CURLE_URL_MALFORMAT,
                                      CURLE_UNSUPPORTED_PROTOCOL, CURLE_TOO_MANY_REDIRECTS,
                                      CURLE_FILESIZE_EXCEEDED, CURLE_READ_ERROR};
    cli_http_result r;
    (void)state;
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++) {
        r = answer(retry[i], "");
        assert_true(cli_http_retryable(&r));
    }
    for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++) {
        r = answer(final[i], "");
        if (cli_http_retryable(&r))
            fail_msg("status %ld is retried", final[i]);
    }
    for (size_t i = 0; i < sizeof(cretry) / sizeof(cretry[0]); i++) {
        r = failure(cretry[i], "");
        assert_true(cli_http_retryable(&r));
    }
    for (size_t i = 0; i < sizeof(cfinal) / sizeof(cfinal[0]); i++) {
        r = failure(cfinal[i], "");
        if (cli_http_retryable(&r))
            fail_msg("curl code %d is retried", (int)cfinal[i]);
    }
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(cli_http_backoff_ms(1000, 1), 1000);
    assert_int_equal(cli_http_backoff_ms(1000, 2), 2000);
    assert_int_equal(cli_http_backoff_ms(1000, 3), 4000);
    assert_int_equal(cli_http_backoff_ms(1000, 6), 30000);
    assert_int_equal(cli_http_backoff_ms(1000, 60), 30000);
    assert_int_equal(cli_http_backoff_ms(0, 5), 0);
    assert_int_equal(cli_http_backoff_ms(50, 3), 200);
}

static void expect_describe(cli_http_result r, const char *needle)
{
    char out[CLI_ERR_MAX];
    cli_http_describe(&r, "PGOF_MERGE_KEY_FILE (/run/k)", 2500, out, sizeof(out));
    if (!strstr(out, needle))
        fail_msg("\"%s\" lacks \"%s\"", out, needle);
}

static void test_describe(void **state)
{
    cli_http_result r;
    (void)state;
    expect_describe(answer(401, ""), "401 Unauthorized); key from PGOF_MERGE_KEY_FILE (/run/k)");
    expect_describe(answer(403, ""), "403 Forbidden)");
    expect_describe(answer(403, ""), "key from PGOF_MERGE_KEY_FILE");
    expect_describe(answer(413, ""), "too large (413 Payload Too Large)");
    expect_describe(answer(400, "bad wire type"), "(400 Bad Request): bad wire type");
    expect_describe(answer(418, ""), "(418): no reason given");
    expect_describe(answer(503, "draining"), "failed (503 Service Unavailable): draining");
    expect_describe(failure(CURLE_COULDNT_CONNECT, "Connection refused"),
                    "cannot connect to the collector: Connection refused");
    expect_describe(failure(CURLE_OPERATION_TIMEDOUT, "x"), "timed out after 2.5 s");
    expect_describe(failure(CURLE_PEER_FAILED_VERIFICATION, "bad cert"), "TLS failure: bad cert");
    expect_describe(failure(CURLE_PARTIAL_FILE, "x"), "cut off");
    r = failure(CURLE_WRITE_ERROR, "");
    r.too_big = 1;
    expect_describe(r, "larger than the limit");
}

static int resets;

static int on_reset(void *ctx)
{
    (void)ctx;
    resets++;
    return 0;
}

static void test_refused_with_retries(void **state)
{
    struct sockaddr_in a = {0};
    socklen_t alen = sizeof(a);
    char url[64];
    cli_http_request req;
    cli_http_result res;
    int s;
    (void)state;

    /* A port that was just free and has no listener. */
    s = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
    close(s);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", ntohs(a.sin_port));

    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    req.body_fd = -1;
    req.timeout_ms = 2000;
    errors_printed = resets = 0;
    assert_int_equal(cli_http_perform_retry(&req, 2, 1, on_reset, &res), -1);
    assert_int_equal(res.curl_code, CURLE_COULDNT_CONNECT);
    assert_int_equal(res.status, 0);
    assert_int_equal(resets, 2);
    assert_int_equal(errors_printed, 2); /* one line per failed attempt but the last */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_refused_with_retries),
    };
    int rc;
    alarm(30);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
