/*
 * routes.c: endpoints, methods, auth and limits (see routes.h).
 *
 * Loop thread only. The endpoints:
 *   GET|HEAD /healthz     200 "OK"
 *   GET|HEAD /metrics     Prometheus text (a merge key if PGOF_METRICS_AUTH=merge)
 *   POST /v1/submit       a CPU profile -> 204 once durable (submit key)
 *   POST /v1/merge        the merged profile, ?and_combine=true and the merge
 *                         options strip_labels, shape, weight, since (query.h)
 *                         (merge key)
 * docs/api.md describes every answer.
 */
#include "collector/routes.h"

#include "collector/conn.h"
#include "collector/keys.h"
#include "collector/log.h"
#include "collector/metrics.h"
#include "collector/query.h"
#include "collector/server.h"
#include "collector/store.h"
#include "collector/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char WWW_AUTH[] = "WWW-Authenticate: Bearer\r\n";

static int refuse(conn *c, int status, const char *reason, const char *extra) {
    c->req.fail_status = status;
    c->req.fail_reason = reason;
    c->req.fail_extra = extra;
    c->_action = CONN_ACT_ERROR;
    return HPE_PAUSED;
}

/* Checks the bearer key against ks; returns 0 or refuses the request. */
static int check_auth(conn *c, const keyset *ks) {
    const char *key;
    size_t klen;
    if (!c->req.auth_seen)
        return refuse(c, 401, "missing Authorization header (want: Bearer <key>)", WWW_AUTH);
    if (c->req.auth_dup)
        return refuse(c, 401, "more than one Authorization header", WWW_AUTH);
    if (keys_parse_bearer(c->req.auth, c->req.auth_len, &key, &klen) != 0)
        return refuse(c, 401, "malformed Authorization header (want: Bearer <key>)", WWW_AUTH);
    /* An overflowing header is compared cut: it cannot match (stored keys
     * are shorter), and the comparison takes the usual time. */
    int ok = keys_match(ks, key, c->req.auth_overflow ? KEYS_MAX_LEN + 1 : klen);
    if (!ok)
        return refuse(c, 403, "key not accepted", NULL);
    return 0;
}

static int is_token(const char *s, size_t n, const char *tok) {
    size_t tl = strlen(tok);
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return n == tl && strncasecmp(s, tok, tl) == 0;
}

int routes_headers(conn *c) {
    server *s = c->server;
    conn_request *r = &c->req;
    const char *url = r->url;
    size_t plen;
    const char *q = memchr(url, '?', r->url_len);
    plen = q ? (size_t)(q - url) : r->url_len;
    r->endpoint = EP_OTHER;
    if (r->url_overflow)
        return refuse(c, 414, "request target too long", NULL);
    if (c->_parser.http_major != 1)
        return refuse(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported", NULL);
    /* Framing we and a proxy in front could read differently (RFC 9112
     * 6.1): llhttp already refuses Content-Length with Transfer-Encoding and
     * a Transfer-Encoding whose last coding is not chunked; we also refuse
     * any other coding (we would store it undecoded) and Transfer-Encoding
     * in HTTP/1.0, which a 1.0 intermediary does not understand. */
    if (r->te_seen) {
        if (c->_parser.http_minor == 0)
            return refuse(c, 400, "bad request: Transfer-Encoding in an HTTP/1.0 request", NULL);
        if (r->hval_overflow || !is_token(r->te, r->te_len, "chunked"))
            return refuse(c, 501, "unsupported Transfer-Encoding (only chunked)", NULL);
    }

#define PATH_IS(lit) (plen == sizeof(lit) - 1 && memcmp(url, lit, plen) == 0)
    int m = r->method;
    if (PATH_IS("/healthz")) {
        r->endpoint = EP_HEALTHZ;
        if (m != HTTP_GET && m != HTTP_HEAD)
            return refuse(c, 405, "method not allowed; use GET or HEAD", "Allow: GET, HEAD\r\n");
        r->route = ROUTE_HEALTHZ;
    } else if (PATH_IS("/metrics")) {
        r->endpoint = EP_METRICS;
        if (m != HTTP_GET && m != HTTP_HEAD)
            return refuse(c, 405, "method not allowed; use GET or HEAD", "Allow: GET, HEAD\r\n");
        if (s->cfg->metrics_need_key && check_auth(c, s->merge_keys) != 0)
            return HPE_PAUSED;
        r->route = ROUTE_METRICS;
    } else if (PATH_IS("/v1/submit")) {
        r->endpoint = EP_SUBMIT;
        if (m != HTTP_POST)
            return refuse(c, 405, "method not allowed; use POST", "Allow: POST\r\n");
        if (check_auth(c, s->submit_keys) != 0)
            return HPE_PAUSED;
        r->route = ROUTE_SUBMIT;
    } else if (PATH_IS("/v1/merge")) {
        r->endpoint = EP_MERGE;
        if (m != HTTP_POST)
            return refuse(c, 405, "method not allowed; use POST", "Allow: POST\r\n");
        if (check_auth(c, s->merge_keys) != 0)
            return HPE_PAUSED;
        r->route = ROUTE_MERGE;
        /* and_combine as in the Go collector (exactly "true" combines);
         * the merge options and their and_combine rule (query.h): a bad
         * value or a refused combination is 400 before the body. */
        mergeopts mo;
        if (query_parse(q ? q + 1 : "", q ? r->url_len - plen - 1 : 0, &mo, r->fail_buf,
                        sizeof r->fail_buf) != 0)
            return refuse(c, 400, r->fail_buf, NULL);
        r->and_combine = mo.combine;
    } else {
        return refuse(c, 404, "not found", NULL);
    }
#undef PATH_IS

    /* Expect: only 100-continue, and only meaningful on HTTP/1.1. */
    if (r->expect_seen) {
        if (r->hval_overflow || !is_token(r->expect, r->expect_len, "100-continue"))
            return refuse(c, 417, "unsupported Expect header (only 100-continue)", NULL);
        if (c->_parser.http_minor >= 1)
            c->flags |= CONN_F_CONTINUE;
    }
    uint64_t max = s->cfg->max_body_bytes;
    if ((c->_parser.flags & F_CONTENT_LENGTH) && c->_parser.content_length > max) {
        if (r->route == ROUTE_SUBMIT)
            metrics_count_reject(REJECT_BODY_TOO_LARGE);
        snprintf(r->fail_buf, sizeof r->fail_buf,
                 "request body of %llu bytes is larger than the limit of %llu bytes",
                 (unsigned long long)c->_parser.content_length, (unsigned long long)max);
        return refuse(c, 413, r->fail_buf, NULL);
    }
    if (r->route != ROUTE_SUBMIT) {
        c->flags |= CONN_F_DISCARD_BODY;
        if (c->flags & CONN_F_CONTINUE)
            conn_send_continue(c);
        return 0;
    }
    if (r->encoding_len > 0 && !is_token(r->encoding, r->encoding_len, "gzip") &&
        !is_token(r->encoding, r->encoding_len, "x-gzip") &&
        !is_token(r->encoding, r->encoding_len, "identity"))
        return refuse(c, 415, "unsupported Content-Encoding (use gzip or none)", NULL);
    if (c->flags & CONN_F_CONTINUE) {
        /* The client waits for 100 Continue before it sends the body:
         * create the file first, so a storage error is answered instead. */
        c->_action = CONN_ACT_OPEN;
        return HPE_PAUSED;
    }
    /* Otherwise the file is created later, in the same threadpool job as
     * the first write or (for a body that fits the upload's buffer) as the
     * validation: one pool round trip instead of three. */
    int rc = upload_prepare(&c->up, s->cfg->directory, c->id,
                            (c->_parser.flags & F_CONTENT_LENGTH) ? c->_parser.content_length : 0);
    if (rc != 0) {
        metrics_count_reject(REJECT_STORAGE);
        snprintf(r->fail_buf, sizeof r->fail_buf, "cannot store the upload: %s", uv_strerror(rc));
        return refuse(c, util_storage_status(rc), r->fail_buf,
                      util_storage_status(rc) == 503 ? "Retry-After: 1\r\n" : NULL);
    }
    return 0;
}

/* ---- submit -------------------------------------------------------------- */

/* The answer to a failed file operation on an upload (util_storage_status). */
static void storage_error(conn *c, int rc, const char *why) {
    int status = util_storage_status(rc);
    conn_send_error(c, status, why, status == 503 ? "Retry-After: 1\r\n" : NULL);
}

static void on_upload_open(upload *u, int status) {
    conn *c = u->data;
    if (c->state == CONN_S_CLOSED || status == UV_ECANCELED) {
        conn_release(c);
        return;
    }
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof why, "cannot store the upload: %s", uv_strerror(status));
        LOG(LOG_ERROR, "conn=%llu creating a temporary file in %s: %s", (unsigned long long)c->id,
            c->server->cfg->directory, uv_strerror(status));
        metrics_count_reject(REJECT_STORAGE);
        storage_error(c, status, why);
        conn_release(c);
        return;
    }
    /* Auth and size passed and the file is ready: now ask for the body. */
    if (c->flags & CONN_F_CONTINUE)
        conn_send_continue(c);
    conn_release(c);
    conn_resume(c);
}

void routes_open_upload(conn *c) {
    int rc = upload_open(&c->up, c->server->cfg->directory, c->id, on_upload_open);
    if (rc != 0) {
        char why[128];
        snprintf(why, sizeof why, "cannot store the upload: %s", uv_strerror(rc));
        metrics_count_reject(REJECT_STORAGE);
        storage_error(c, rc, why);
        return;
    }
    conn_hold(c);
}

static void on_submitted(void *arg, int status, const char *reason) {
    conn *c = arg;
    if (c->state != CONN_S_CLOSED) {
        if (status == 204)
            conn_send(c, 204, NULL, NULL, NULL, 0, NULL, NULL);
        else
            /* 503 on a submit: out of memory or descriptors, or a store that
             * could not load; the next profile may try again soon. */
            conn_send_error(c, status, reason, status == 503 ? "Retry-After: 1\r\n" : NULL);
    }
    conn_release(c);
}

/* ---- merge ----------------------------------------------------------------- */

static void on_merged(void *arg, int status, const char *reason, store_blob *blob) {
    conn *c = arg;
    if (c->state != CONN_S_CLOSED) {
        if (status == 200)
            conn_send(c, 200, "application/octet-stream",
                      "Content-Disposition: attachment; filename=\"merged.pgo\"\r\n", blob->data,
                      blob->len, store_blob_unref, blob);
        else
            conn_send_error(c, status, reason, status == 503 ? "Retry-After: 5\r\n" : NULL);
    } else {
        store_blob_unref(blob);
    }
    conn_release(c);
}

void routes_dispatch(conn *c) {
    server *s = c->server;
    switch (c->req.route) {
    case ROUTE_HEALTHZ:
        conn_send(c, 200, "text/plain; charset=utf-8", NULL, "OK", 2, NULL, NULL);
        return;
    case ROUTE_METRICS: {
        char *text;
        size_t len;
        metrics_render(&text, &len);
        conn_send(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len, free, text);
        return;
    }
    case ROUTE_SUBMIT: {
        int fd, created;
        char *path, *buf;
        size_t len;
        upload_detach(&c->up, &fd, &path, &buf, &len, &created);
        conn_hold(c);
        store_submit(s->store, fd, path, created, buf, len, c, on_submitted);
        return;
    }
    case ROUTE_MERGE: {
        /* The query passed query_parse in routes_headers; parse it again
         * rather than keep the options in every request. */
        const char *q = memchr(c->req.url, '?', c->req.url_len);
        mergeopts mo;
        char why[MERGEOPTS_ERR_MAX];
        if (q == NULL || query_parse(q + 1, c->req.url_len - (size_t)(q + 1 - c->req.url), &mo,
                                     why, sizeof why) != 0)
            mergeopts_init(&mo);
        mo.combine = c->req.and_combine;
        conn_hold(c);
        store_query(s->store, &mo, c, on_merged);
        return;
    }
    default:
        conn_send_error(c, 500, "internal error: no route", NULL);
        return;
    }
}
