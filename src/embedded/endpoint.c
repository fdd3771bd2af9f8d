/*
 * endpoint.c: where finished profiles go: an HTTP POST to a pgo-fleet
 * collector with libcurl, or a caller's callback.
 *
 * DESIGN
 * An endpoint is immutable after creation except for its timeout, and
 * reference counted (atomic): the caller holds one reference, each
 * pgof_enable thread another, so pgof_endpoint_free may come at any time.
 *
 * The POST runs on libpgof's background thread, never on a host thread. It
 * uses a fresh easy handle per submit (one every few minutes, so connection
 * reuse buys nothing), CURLOPT_NOSIGNAL (libcurl must not raise SIGALRM
 * for DNS timeouts in a process it does not own), a whole-request timeout,
 * and the original client's headers: Authorization: Bearer <key> and the
 * body as application/octet-stream (with a Content-Length, which the
 * collector prefers to chunked encoding). 200 and 204 are success, as in the
 * original API; anything else becomes PGOF_ESUBMIT with the status or
 * libcurl's reason. curl_global_init runs once, from pgof_endpoint_new on
 * the caller's thread (libcurl asks for it before any other thread uses
 * libcurl).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded/internal.h"

struct pgof_endpoint {
    _Atomic int refs;
    char *url;         /* NULL for a custom endpoint */
    char *auth_header; /* "Authorization: Bearer <key>" */
    _Atomic uint64_t timeout_ms;
    pgof_submit_cb cb;
    void *ctx;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Whether url parses and is http(s) with a host. */
static int check_url(const char *url, pgof_error *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    CURLUcode uc;
    int rc = 0;

    if (!u)
        return pgof__fail(err, PGOF_ENOMEM, "out of memory parsing the submit URL");
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = pgof__fail(err, PGOF_EINVAL, "the submit URL \"%.100s\" does not parse: %s", url,
                        curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        rc = pgof__fail(err, PGOF_EINVAL, "the submit URL \"%.100s\" is not http or https", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        rc = pgof__fail(err, PGOF_EINVAL, "the submit URL \"%.100s\" has no host", url);
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

int pgof_endpoint_new(const char *submit_url, const char *key, pgof_endpoint **out,
                      pgof_error *err)
{
    pgof_endpoint *ep;
    int rc;

    *out = NULL;
    if (!submit_url || !key)
        return pgof__fail(err, PGOF_EINVAL, "the submit URL and the key must not be NULL");
    if (!*key || strpbrk(key, "\r\n"))
        return pgof__fail(err, PGOF_EINVAL, "the key must be one non-empty line");
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK)
        return pgof__fail(err, PGOF_ESYS, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
    if ((rc = check_url(submit_url, err)))
        return rc;
    if (!(ep = calloc(1, sizeof(*ep))))
        return pgof__fail(err, PGOF_ENOMEM, "out of memory");
    atomic_init(&ep->refs, 1);
    atomic_init(&ep->timeout_ms, 60000);
    ep->url = strdup(submit_url);
    ep->auth_header = malloc(strlen(key) + sizeof("Authorization: Bearer "));
    if (!ep->url || !ep->auth_header) {
        pgof_endpoint_free(ep);
        return pgof__fail(err, PGOF_ENOMEM, "out of memory");
    }
    strcpy(ep->auth_header, "Authorization: Bearer ");
    strcat(ep->auth_header, key);
    *out = ep;
    return 0;
}

int pgof_endpoint_new_custom(pgof_submit_cb cb, void *ctx, pgof_endpoint **out,
                             pgof_error *err)
{
    pgof_endpoint *ep;

    *out = NULL;
    if (!cb)
        return pgof__fail(err, PGOF_EINVAL, "the submit callback must not be NULL");
    if (!(ep = calloc(1, sizeof(*ep))))
        return pgof__fail(err, PGOF_ENOMEM, "out of memory");
    atomic_init(&ep->refs, 1);
    ep->cb = cb;
    ep->ctx = ctx;
    *out = ep;
    return 0;
}

int pgof_endpoint_set_timeout(pgof_endpoint *ep, uint64_t timeout_ms, pgof_error *err)
{
    if (!ep || timeout_ms == 0 || timeout_ms > 86400000)
        return pgof__fail(err, PGOF_EINVAL, "the timeout must be 1 ms to 24 h");
    atomic_store(&ep->timeout_ms, timeout_ms);
    return 0;
}

void pgof__endpoint_ref(pgof_endpoint *ep)
{
    atomic_fetch_add(&ep->refs, 1);
}

void pgof_endpoint_free(pgof_endpoint *ep)
{
    if (!ep || atomic_fetch_sub(&ep->refs, 1) != 1)
        return;
    if (ep->auth_header) /* the key must not linger in freed memory */
        memset(ep->auth_header, 0, strlen(ep->auth_header));
    free(ep->auth_header);
    free(ep->url);
    free(ep);
}

static size_t discard_body(char *p, size_t size, size_t n, void *ctx)
{
    (void)p, (void)ctx;
    return size * n;
}

static int post(pgof_endpoint *ep, const uint8_t *data, size_t len, pgof_error *err)
{
    char curl_err[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL, *h;
    CURL *c = curl_easy_init();
    long status = 0;
    CURLcode cc;
    int rc = 0;

    if (!c)
        return pgof__fail(err, PGOF_ESUBMIT, "curl_easy_init failed");
    if (!(h = curl_slist_append(hdrs, ep->auth_header)) || !(hdrs = h) ||
        !(h = curl_slist_append(hdrs, "Content-Type: application/octet-stream")) || !(hdrs = h) ||
        !(h = curl_slist_append(hdrs, "Expect:")) || !(hdrs = h)) {
        rc = pgof__fail(err, PGOF_ENOMEM, "out of memory building the request");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, ep->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)atomic_load(&ep->timeout_ms));
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "libpgof/" "0.1");
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = pgof__fail(err, PGOF_ESUBMIT, "submitting %zu bytes to %.100s failed: %s", len,
                        ep->url, *curl_err ? curl_err : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 204)
        rc = pgof__fail(err, PGOF_ESUBMIT, "the collector at %.100s answered %ld to a submit",
                        ep->url, status);
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

int pgof__endpoint_submit(pgof_endpoint *ep, const uint8_t *data, size_t len,
                          pgof_error *err)
{
    char buf[PGOF_ERRMSG_MAX] = "";

    if (!ep->cb)
        return post(ep, data, len, err);
    if (ep->cb(ep->ctx, data, len, buf, sizeof(buf)) == 0)
        return 0;
    buf[sizeof(buf) - 1] = '\0';
    return pgof__fail(err, PGOF_ESUBMIT, "the custom endpoint failed: %s",
                      *buf ? buf : "no reason given");
}
