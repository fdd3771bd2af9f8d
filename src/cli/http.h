/*
 * http.h: one HTTP exchange with a collector, through libcurl.
 *
 * DESIGN
 * A subcommand describes a request (method, URL, bearer key, an optional
 * body read from a descriptor, a sink for the response body) and gets back
 * a result: libcurl's code, the HTTP status and, for a non-2xx answer, the
 * first line of the body (the collector puts its reason there). The policy
 * that every command shares also lives here: which failures are worth a
 * retry, how long to back off, and how to say what went wrong in one
 * sentence without printing the key.
 *
 * Transport rules, in one place (cli_http_perform):
 * - only http and https, also after a redirect; a redirect from https may
 *   only go to https. At most 5 redirects. POST stays POST on 301/302 (the
 *   collector has no GET endpoints for these), and the body is re-read from
 *   the start through a seek callback.
 * - the Authorization header is a custom header, which libcurl does not send
 *   to another host, scheme or port after a redirect as long as
 *   CURLOPT_UNRESTRICTED_AUTH stays off (it does; see that option's manual).
 * - proxies come from the usual environment variables (libcurl reads
 *   http_proxy, https_proxy, no_proxy by itself).
 * - a response body larger than max_body aborts the transfer.
 *
 * Runs on the main thread only; the process calls curl_global_init once in
 * main before any request.
 */
#ifndef PGOF_CLI_HTTP_H
#define PGOF_CLI_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

/* Receives successive chunks of a 2xx response body. Returns 0 to go on. */
typedef int (*cli_http_body_cb)(void *ctx, const void *data, size_t len);

/* Called before every attempt but the first (to empty an output file). */
typedef int (*cli_http_reset_cb)(void *ctx);

typedef struct cli_http_request {
    const char *method;         /* "GET" or "POST" */
    const char *url;
    const char *bearer;         /* key for "Authorization: Bearer", or NULL */
    int body_fd;                /* POST body, read from offset 0; -1: empty */
    int64_t body_len;           /* its length in bytes (sent as Content-Length) */
    cli_http_body_cb on_body;   /* 2xx body sink; NULL discards the body */
    void *ctx;                  /* passed to on_body and the reset callback */
    long timeout_ms;            /* whole exchange; 0: no limit */
    long connect_timeout_ms;    /* 0: libcurl's default */
    const char *cacert;         /* CA bundle file, or NULL for the system's */
    uint64_t max_body;          /* largest accepted body; 0: no limit */
    int progress;               /* draw progress on stderr */
    const char *progress_label;
} cli_http_request;

#define CLI_HTTP_REASON_MAX 200

typedef struct cli_http_result {
    CURLcode curl_code;         /* CURLE_OK when an answer arrived whole */
    long status;                /* final HTTP status; 0 when none arrived */
    uint64_t body_bytes;        /* 2xx body bytes handed to on_body */
    int sink_failed;            /* on_body asked to stop */
    int too_big;                /* the body passed max_body */
    char reason[CLI_HTTP_REASON_MAX]; /* first line of a non-2xx body, escaped */
    char curl_msg[CURL_ERROR_SIZE];   /* libcurl's detailed error text */
} cli_http_result;

/*
 * Performs one exchange. Returns 0 when a complete HTTP answer arrived
 * (whatever its status: look at res->status), or -1 when the transfer
 * failed (res->curl_code says why). Borrows everything in req.
 */
int cli_http_perform(const cli_http_request *req, cli_http_result *res);

/*
 * The retry policy: connection failures, timeouts, cut-off or empty
 * answers, 5xx and 429 are worth another try; TLS and certificate errors,
 * every other 4xx, a refused sink or an oversized body are not.
 */
int cli_http_retryable(const cli_http_result *res);

/* Back-off before retry number n (1-based): base * 2^(n-1), capped at 30 s. */
long cli_http_backoff_ms(long base_ms, int n);

/*
 * Performs req up to 1 + retries times, sleeping with back-off between
 * attempts while the failure is retryable, and reporting each failed attempt
 * on stderr. reset (may be NULL) runs before each retry; if it fails, no
 * further attempt is made. Returns like cli_http_perform for the last try.
 */
int cli_http_perform_retry(const cli_http_request *req, int retries,
                           long base_delay_ms, cli_http_reset_cb reset,
                           cli_http_result *res);

/*
 * One sentence saying what went wrong, for any result that is not 2xx.
 * key_source names where the key came from (cli_key.source) so 401/403 can
 * point at it; it is never the key itself. timeout_ms is quoted for
 * timeouts.
 */
void cli_http_describe(const cli_http_result *res, const char *key_source,
                       long timeout_ms, char *out, size_t len);

#endif /* PGOF_CLI_HTTP_H */
