/*
 * http.c: one HTTP exchange with a collector through libcurl's easy
 * interface, the shared retry policy, and failure sentences.
 *
 * DESIGN
 * Every exchange gets a fresh easy handle: pgof makes a handful of requests
 * per run, so connection reuse is not worth the state it would carry between
 * attempts (a retry should start from a clean connection anyway). The
 * transport rules are documented in http.h; this file is the only place
 * that sets libcurl options.
 *
 * The write callback decides per chunk where the body goes, because the
 * status is known by then (CURLINFO_RESPONSE_CODE is valid once headers are
 * in): a 2xx body streams to the caller's sink; any other body is kept only
 * for its first bytes, which the collector fills with a one-line reason.
 * Returning a short count from the write callback makes libcurl fail with
 * CURLE_WRITE_ERROR, which is how a full disk or an oversized body stops
 * the transfer.
 *
 * The key is copied into a header string that is wiped before it is freed;
 * it never reaches a message.
 */
#include "cli/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define RAW_REASON_MAX 512
#define MAX_REDIRECTS 5L
#define BACKOFF_CAP_MS 30000L

typedef struct exchange {
    const cli_http_request *req;
    cli_http_result *res;
    CURL *h;
    size_t raw_len;
    char raw[RAW_REASON_MAX];
    /* progress drawing */
    struct timespec last_draw;
    int drew;
} exchange;

static long status_now(CURL *h)
{
    long code = 0;
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
        return 0;
    return code;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    exchange *x = ud;
    size_t len = size * nmemb;
    long status = status_now(x->h);

    if (status >= 200 && status < 300) {
        if (x->req->max_body && x->res->body_bytes + len > x->req->max_body) {
            x->res->too_big = 1;
            return 0;
        }
        if (x->req->on_body && len && x->req->on_body(x->req->ctx, data, len) != 0) {
            x->res->sink_failed = 1;
            return 0;
        }
        x->res->body_bytes += len;
        return len;
    }
    /* Not a success: keep the start of the body for its reason line. */
    size_t room = sizeof(x->raw) - x->raw_len;
    size_t take = len < room ? len : room;
    memcpy(x->raw + x->raw_len, data, take);
    x->raw_len += take;
    return len;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    exchange *x = ud;
    ssize_t n;
    do {
        n = read(x->req->body_fd, buf, size * nmemb);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return CURL_READFUNC_ABORT;
    return (size_t)n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    exchange *x = ud;
    if (lseek(x->req->body_fd, (off_t)offset, origin) < 0)
        return CURL_SEEKFUNC_FAIL;
    return CURL_SEEKFUNC_OK;
}

static double elapsed_s(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    exchange *x = ud;
    struct timespec now;
    char a[32], b[32];
    int up = ultotal > 0 && ulnow < ultotal;
    curl_off_t done = up ? ulnow : dlnow, total = up ? ultotal : dltotal;

    if (done == 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (x->drew && elapsed_s(&x->last_draw, &now) < 0.1)
        return 0;
    x->last_draw = now;
    x->drew = 1;
    cli_fmt_bytes((uint64_t)done, a, sizeof(a));
    if (total > 0)
        fprintf(stderr, "\r\033[K%s: %s %s of %s (%d%%)", x->req->progress_label,
                up ? "sent" : "received", a, cli_fmt_bytes((uint64_t)total, b, sizeof(b)),
                (int)(done * 100 / total));
    else
        fprintf(stderr, "\r\033[K%s: %s %s", x->req->progress_label,
                up ? "sent" : "received", a);
    return 0;
}

/* The first line of a non-2xx body, with anything unprintable replaced. */
static void set_reason(exchange *x)
{
    size_t o = 0;
    for (size_t i = 0; i < x->raw_len && o + 1 < sizeof(x->res->reason); i++) {
        unsigned char c = (unsigned char)x->raw[i];
        if (c == '\n' || c == '\r')
            break;
        x->res->reason[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    while (o > 0 && x->res->reason[o - 1] == ' ')
        o--;
    x->res->reason[o] = '\0';
}

int cli_http_perform(const cli_http_request *req, cli_http_result *res)
{
    exchange x;
    struct curl_slist *headers = NULL, *tmp;
    char *auth = NULL;
    size_t auth_len = 0;
    int https, rc = -1;

    memset(res, 0, sizeof(*res));
    memset(&x, 0, sizeof(x));
    x.req = req;
    x.res = res;
    res->curl_code = CURLE_FAILED_INIT;

    x.h = curl_easy_init();
    if (!x.h) {
        snprintf(res->curl_msg, sizeof(res->curl_msg), "cannot initialise libcurl");
        return -1;
    }
    https = strncasecmp(req->url, "https:", 6) == 0;

    if (req->bearer) {
        auth_len = strlen("Authorization: Bearer ") + strlen(req->bearer) + 1;
        auth = malloc(auth_len);
        if (!auth)
            goto cleanup;
        snprintf(auth, auth_len, "Authorization: Bearer %s", req->bearer);
        if (!(tmp = curl_slist_append(headers, auth)))
            goto cleanup;
        headers = tmp;
    }
    /* The collector never answers "100 Continue"; waiting for it costs 1 s. */
    if (!(tmp = curl_slist_append(headers, "Expect:")))
        goto cleanup;
    headers = tmp;

    curl_easy_setopt(x.h, CURLOPT_URL, req->url);
    curl_easy_setopt(x.h, CURLOPT_ERRORBUFFER, res->curl_msg);
    curl_easy_setopt(x.h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x.h, CURLOPT_USERAGENT, "pgof/" PGOF_VERSION);
    curl_easy_setopt(x.h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x.h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(x.h, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    curl_easy_setopt(x.h, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
    curl_easy_setopt(x.h, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(x.h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(x.h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(x.h, CURLOPT_WRITEDATA, &x);
    if (req->timeout_ms > 0)
        curl_easy_setopt(x.h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->connect_timeout_ms > 0)
        curl_easy_setopt(x.h, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    if (req->cacert)
        curl_easy_setopt(x.h, CURLOPT_CAINFO, req->cacert);
    if (req->max_body)
        curl_easy_setopt(x.h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);

    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(x.h, CURLOPT_POST, 1L);
        curl_easy_setopt(x.h, CURLOPT_POSTREDIR, (long)(CURL_REDIR_POST_301 | CURL_REDIR_POST_302));
        if (req->body_fd >= 0) {
            if (lseek(req->body_fd, 0, SEEK_SET) < 0) {
                snprintf(res->curl_msg, sizeof(res->curl_msg), "cannot rewind the body: %s",
                         strerror(errno));
                res->curl_code = CURLE_READ_ERROR;
                goto cleanup;
            }
            curl_easy_setopt(x.h, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(x.h, CURLOPT_READDATA, &x);
            curl_easy_setopt(x.h, CURLOPT_SEEKFUNCTION, on_seek);
            curl_easy_setopt(x.h, CURLOPT_SEEKDATA, &x);
            curl_easy_setopt(x.h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        } else {
            curl_easy_setopt(x.h, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(x.h, CURLOPT_POSTFIELDSIZE, 0L);
        }
    } else {
        curl_easy_setopt(x.h, CURLOPT_HTTPGET, 1L);
    }
    if (req->progress) {
        curl_easy_setopt(x.h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(x.h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(x.h, CURLOPT_XFERINFODATA, &x);
    }

    res->curl_code = curl_easy_perform(x.h);
    res->status = status_now(x.h);
    if (x.drew)
        fputs("\r\033[K", stderr);
    if (res->status < 200 || res->status >= 300)
        set_reason(&x);
    if (res->curl_code == CURLE_FILESIZE_EXCEEDED)
        res->too_big = 1;
    if (res->curl_code != CURLE_OK && !res->curl_msg[0])
        snprintf(res->curl_msg, sizeof(res->curl_msg), "%s", curl_easy_strerror(res->curl_code));
    rc = res->curl_code == CURLE_OK ? 0 : -1;

cleanup:
    curl_slist_free_all(headers);
    if (auth) {
        explicit_bzero(auth, auth_len);
        free(auth);
    }
    curl_easy_cleanup(x.h);
    return rc;
}

static int is_tls_error(CURLcode c)
{
    switch (c) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return 1;
    default:
        return 0;
    }
}

int cli_http_retryable(const cli_http_result *res)
{
    switch (res->curl_code) {
    case CURLE_OK:
        return res->status >= 500 || res->status == 429;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
        return 1;
    default:
        return 0;
    }
}

long cli_http_backoff_ms(long base_ms, int n)
{
    long d = base_ms < 0 ? 0 : base_ms;
    for (int i = 1; i < n && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    return d > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : d;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int cli_http_perform_retry(const cli_http_request *req, int retries,
                           long base_delay_ms, cli_http_reset_cb reset,
                           cli_http_result *res)
{
    char why[CLI_ERR_MAX];
    int rc;

    for (int attempt = 0;; attempt++) {
        if (attempt > 0 && reset && reset(req->ctx) != 0)
            return -1;
        rc = cli_http_perform(req, res);
        if (attempt >= retries || !cli_http_retryable(res))
            return rc;
        long delay = cli_http_backoff_ms(base_delay_ms, attempt + 1);
        cli_http_describe(res, NULL, req->timeout_ms, why, sizeof(why));
        cli_error("attempt %d of %d failed: %s; retrying in %.1f s", attempt + 1,
                  retries + 1, why, (double)delay / 1000.0);
        sleep_ms(delay);
    }
}

static const char *status_text(long status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

void cli_http_describe(const cli_http_result *res, const char *key_source,
                       long timeout_ms, char *out, size_t len)
{
    const char *src = key_source && key_source[0] ? key_source : "no key was sent";
    const char *reason = res->reason[0] ? res->reason : "no reason given";
    const char *stext = status_text(res->status);
    char st[64];

    snprintf(st, sizeof(st), "%ld%s%s", res->status, stext[0] ? " " : "", stext);
    if (res->curl_code == CURLE_OK) {
        if (res->status == 401)
            snprintf(out, len, "the collector did not accept the key (%s); key from %s", st, src);
        else if (res->status == 403)
            snprintf(out, len, "the key is not allowed here (%s): is it a submit key used for "
                     "merging, or the other way round? key from %s", st, src);
        else if (res->status == 413)
            snprintf(out, len, "the collector refused the upload as too large (%s)", st);
        else if (res->status >= 400 && res->status < 500)
            snprintf(out, len, "the collector refused the request (%s): %s", st, reason);
        else if (res->status >= 500)
            snprintf(out, len, "the collector failed (%s): %s", st, reason);
        else
            snprintf(out, len, "unexpected answer (%s)", st);
        return;
    }
    if (res->too_big)
        snprintf(out, len, "the answer is larger than the limit; transfer stopped");
    else if (res->sink_failed)
        snprintf(out, len, "could not store the answer (see the message above)");
    else if (res->curl_code == CURLE_COULDNT_CONNECT)
        snprintf(out, len, "cannot connect to the collector: %s", res->curl_msg);
    else if (res->curl_code == CURLE_COULDNT_RESOLVE_HOST)
        snprintf(out, len, "cannot resolve the collector's host name: %s", res->curl_msg);
    else if (res->curl_code == CURLE_OPERATION_TIMEDOUT)
        snprintf(out, len, "timed out after %.1f s: %s", (double)timeout_ms / 1000.0, res->curl_msg);
    else if (is_tls_error(res->curl_code))
        snprintf(out, len, "TLS failure: %s", res->curl_msg);
    else if (res->curl_code == CURLE_PARTIAL_FILE || res->curl_code == CURLE_RECV_ERROR)
        snprintf(out, len, "the answer was cut off (%ld bytes arrived): %s",
                 (long)res->body_bytes, res->curl_msg);
    else if (res->curl_code == CURLE_GOT_NOTHING)
        snprintf(out, len, "the collector closed the connection without answering");
    else if (res->curl_code == CURLE_TOO_MANY_REDIRECTS)
        snprintf(out, len, "too many redirects: %s", res->curl_msg);
    else if (res->curl_code == CURLE_UNSUPPORTED_PROTOCOL)
        snprintf(out, len, "refused to follow: %s (only http and https are allowed, and "
                 "https only to https)", res->curl_msg);
    else
        snprintf(out, len, "%s", res->curl_msg);
}
