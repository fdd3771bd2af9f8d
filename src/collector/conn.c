/*
 * conn.c: the connection state machine (see conn.h for the design).
 *
 * Everything here runs on the loop thread. Parser callbacks never start a
 * state change that could free the connection: they record what should
 * happen next in c->_action and return HPE_PAUSED (or HPE_USER for an
 * error); process() acts on it once llhttp_execute() has returned.
 */
#include "collector/conn.h"

#include "collector/log.h"
#include "collector/metrics.h"
#include "collector/routes.h"
#include "collector/server.h"
#include "collector/util.h"
#include "common/quote.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Input buffer per connection: large enough for efficient body writes. */
#define CONN_IN_BUF (32 * 1024)
/* After an error answer: how long and how much input we drain before
 * closing, so the client reads the answer rather than a reset. */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (8u << 20)

static void process(conn *c);

/* ---- helpers --------------------------------------------------------- */

static const char *status_text(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

static void set_state(conn *c, conn_state st) {
    static const char *const names[] = {"head", "body", "work", "write", "linger", "closed"};
    if (c->state != st)
        LOG(LOG_DEBUG, "conn=%llu state %s -> %s", (unsigned long long)c->id, names[c->state],
            names[st]);
    c->state = st;
}

static int wants_read(const conn *c) {
    if (c->state == CONN_S_LINGER)
        return 1;
    return (c->state == CONN_S_HEAD || c->state == CONN_S_BODY) && !(c->flags & CONN_F_PAUSED);
}

static void on_io_timeout(uv_timer_t *t);

static void io_timer_restart(conn *c, uint64_t ms) {
    uv_timer_start(&c->_io_timer, on_io_timeout, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Starts or stops reading to match the state, and arms the idle timer. */
static void update_reading(conn *c) {
    if (c->state == CONN_S_CLOSED)
        return;
    if (wants_read(c)) {
        if (!(c->flags & CONN_F_READING)) {
            if (c->_io->read_start(c) != 0) {
                conn_close(c);
                return;
            }
            c->flags |= CONN_F_READING;
            if (c->state != CONN_S_LINGER)
                io_timer_restart(c, c->server->cfg->idle_timeout_ms);
        }
    } else if (c->flags & CONN_F_READING) {
        c->_io->read_stop(c);
        c->flags &= ~CONN_F_READING;
        if (c->state != CONN_S_WRITE)
            uv_timer_stop(&c->_io_timer);
    }
}

static void maybe_free(conn *c) {
    if (c->state == CONN_S_CLOSED && c->_handles_open == 0 && c->_busy == 0 &&
        !upload_busy(&c->up)) {
        free(c->_in);
        free(c);
    }
}

static void on_handle_close(uv_handle_t *h) {
    conn *c = h->data;
    c->_handles_open--;
    maybe_free(c);
}

void conn_hold(conn *c) {
    c->_busy++;
}

void conn_release(conn *c) {
    assert(c->_busy > 0);
    c->_busy--;
    maybe_free(c);
}

void conn_close(conn *c) {
    if (c->state == CONN_S_CLOSED)
        return;
    set_state(c, CONN_S_CLOSED);
    if (c->flags & CONN_F_READING)
        c->_io->read_stop(c);
    c->flags &= ~CONN_F_READING;
    /* The upload keeps c alive (maybe_free checks it) until its in-flight
     * write, which borrows c->_in, has called back. */
    upload_cleanup(&c->up);
    uv_close((uv_handle_t *)&c->_tcp, on_handle_close);
    uv_close((uv_handle_t *)&c->_io_timer, on_handle_close);
    uv_close((uv_handle_t *)&c->_req_timer, on_handle_close);
    server__conn_gone(c->server, c);
}

void conn_close_if_idle(conn *c) {
    if ((c->state == CONN_S_HEAD && !(c->flags & CONN_F_STARTED) && c->_in_off == c->_in_len) ||
        c->state == CONN_S_LINGER)
        conn_close(c);
}

/* ---- writing --------------------------------------------------------- */

static void begin_linger(conn *c);

static void reset_request(conn *c) {
    memset(&c->req, 0, sizeof c->req);
    c->req.method = -1;
    c->flags &= ~(CONN_F_PAUSED | CONN_F_MSG_DONE | CONN_F_DISCARD_BODY | CONN_F_CONTINUE |
                  CONN_F_STARTED | CONN_F_WRITING_BODY);
    c->_action = CONN_ACT_NONE;
}

static void on_write_done(uv_write_t *req, int status) {
    conn *c = req->data;
    if (c->_body_free != NULL) {
        c->_body_free(c->_body_owner);
        c->_body_free = NULL;
        c->_body_owner = NULL;
    }
    if (c->state == CONN_S_CLOSED)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->flags & CONN_F_CLOSE_AFTER) {
        begin_linger(c);
        return;
    }
    /* Keep-alive: the parser sits paused at the end of the last message;
     * resume it on whatever pipelined bytes are already buffered. */
    reset_request(c);
    set_state(c, CONN_S_HEAD);
    llhttp_resume(&c->_parser);
    io_timer_restart(c, c->server->cfg->idle_timeout_ms);
    process(c);
}

static void log_request(conn *c) {
    char path[300];
    const char *method = c->req.method >= 0
                             ? llhttp_method_name((llhttp_method_t)c->req.method)
                             : "-";
    quote_bytes(path, sizeof path, c->req.url, c->req.url_len, 200);
    uint64_t ms = c->req.start_ms ? uv_now(c->server->loop) - c->req.start_ms : 0;
    LOG(LOG_INFO, "conn=%llu peer=%s \"%s %s\" status=%d bytes_in=%llu bytes_out=%llu ms=%llu%s%s",
        (unsigned long long)c->id, c->peer, method, c->req.url_len ? path : "-", c->req.status,
        (unsigned long long)c->req.body_bytes, (unsigned long long)c->req.resp_bytes,
        (unsigned long long)ms, c->req.reject ? " reason=" : "",
        c->req.reject ? c->req.reject : "");
}

void conn_send(conn *c, int status, const char *ctype, const char *extra, const void *body,
               size_t len, void (*body_free)(void *), void *body_owner) {
    uv_buf_t bufs[2];
    unsigned nbufs = 1;
    int n;
    assert(c->state != CONN_S_WRITE && c->state != CONN_S_LINGER);
    if (c->state == CONN_S_CLOSED) {
        if (body_free != NULL)
            body_free(body_owner);
        return;
    }
    if (c->server->shutting_down)
        c->flags |= CONN_F_CLOSE_AFTER;
    int head_only = c->req.method == HTTP_HEAD;
    const char *conn_hdr = "";
    if (c->flags & CONN_F_CLOSE_AFTER)
        conn_hdr = "Connection: close\r\n";
    else if (c->_parser.http_major == 1 && c->_parser.http_minor == 0)
        conn_hdr = "Connection: keep-alive\r\n";
    char clen[48] = "";
    if (status != 204)
        snprintf(clen, sizeof clen, "Content-Length: %zu\r\n", len);
    n = snprintf(c->_head, sizeof c->_head, "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s\r\n", status,
                 status_text(status), clen, ctype ? "Content-Type: " : "", ctype ? ctype : "",
                 ctype ? "\r\n" : "", conn_hdr, extra ? extra : "");
    assert(n > 0 && (size_t)n < sizeof c->_head);
    bufs[0] = uv_buf_init(c->_head, (unsigned)n);
    if (!head_only && len > 0 && status != 204)
        bufs[nbufs++] = uv_buf_init((char *)body, (unsigned)len);
    c->req.status = status;
    c->req.resp_bytes = head_only ? 0 : len;
    metrics_count_request(c->req.endpoint, status);
    log_request(c);
    uv_timer_stop(&c->_req_timer);
    set_state(c, CONN_S_WRITE);
    update_reading(c);
    c->_body_free = body_free;
    c->_body_owner = body_owner;
    c->_write_req.data = c;
    io_timer_restart(c, c->server->cfg->idle_timeout_ms);
    if (c->_io->write(c, &c->_write_req, bufs, nbufs, on_write_done) != 0) {
        if (body_free != NULL)
            body_free(body_owner);
        c->_body_free = NULL;
        conn_close(c);
    }
}

void conn_send_error(conn *c, int status, const char *reason, const char *extra) {
    if (c->state == CONN_S_CLOSED || c->state == CONN_S_LINGER)
        return;
    if (c->state == CONN_S_WRITE) {
        /* An answer is already going out; we cannot send a second one. */
        conn_close(c);
        return;
    }
    c->flags |= CONN_F_CLOSE_AFTER;
    if (c->flags & CONN_F_READING) {
        c->_io->read_stop(c);
        c->flags &= ~CONN_F_READING;
    }
    upload_cleanup(&c->up);
    size_t rl = strlen(reason);
    char *body = xmalloc(rl + 2);
    memcpy(body, reason, rl);
    body[rl] = '\n';
    body[rl + 1] = '\0';
    c->req.reject = reason;
    conn_send(c, status, "text/plain; charset=utf-8", extra, body, rl + 1, free, body);
    /* c->req.reject points at reason, which may not outlive this call. */
    c->req.reject = NULL;
}

static void on_continue_written(uv_write_t *req, int status) {
    conn *c = req->data;
    c->_cont_pending = 0;
    if (status < 0 && c->state != CONN_S_CLOSED)
        conn_close(c);
}

void conn_send_continue(conn *c) {
    static char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (c->_cont_pending || c->state == CONN_S_CLOSED)
        return;
    uv_buf_t b = uv_buf_init(line, sizeof line - 1);
    c->_cont_req.data = c;
    if (c->_io->write(c, &c->_cont_req, &b, 1, on_continue_written) == 0)
        c->_cont_pending = 1;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)req;
    (void)status;
}

/* The answer said "Connection: close": half-close and drain for a while so
 * the client reads it (a close with unread input would send a reset). */
static void begin_linger(conn *c) {
    if (c->server->shutting_down || (c->flags & CONN_F_EOF)) {
        conn_close(c);
        return;
    }
    set_state(c, CONN_S_LINGER);
    c->_linger_bytes = 0;
    c->_in_off = c->_in_len = 0;
    if (c->_io->shutdown(c, &c->_shutdown_req, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_stop(&c->_req_timer);
    io_timer_restart(c, LINGER_MS);
    update_reading(c);
}

/* ---- timers ---------------------------------------------------------- */

static void on_io_timeout(uv_timer_t *t) {
    conn *c = t->data;
    char why[96];
    switch (c->state) {
    case CONN_S_HEAD:
        if (!(c->flags & CONN_F_STARTED)) {
            conn_close(c); /* idle keep-alive connection */
            return;
        }
        /* fallthrough */
    case CONN_S_BODY:
        g_metrics.timeouts++;
        snprintf(why, sizeof why, "request timed out: no data for %.3gs",
                 c->server->cfg->idle_timeout_ms / 1000.0);
        conn_send_error(c, 408, why, NULL);
        return;
    case CONN_S_WORK:
        return; /* not armed in this state */
    default:
        if (c->state == CONN_S_WRITE)
            g_metrics.timeouts++;
        conn_close(c);
        return;
    }
}

static void on_req_timeout(uv_timer_t *t) {
    conn *c = t->data;
    char why[96];
    if (c->state != CONN_S_HEAD && c->state != CONN_S_BODY)
        return;
    g_metrics.timeouts++;
    snprintf(why, sizeof why, "request timed out: not received within %.3gs",
             c->server->cfg->request_timeout_ms / 1000.0);
    conn_send_error(c, 408, why, NULL);
}

/* ---- reading and parsing --------------------------------------------- */

/* Where the next read goes: free space at the end of the input buffer, or
 * scratch space while lingering. A zero-length buffer means "full"; libuv
 * then reports UV_ENOBUFS, and conn_feed does the same. */
static void alloc_input(conn *c, uv_buf_t *buf) {
    if (c->state == CONN_S_LINGER) {
        /* Dropped bytes go to scratch space shared by every lingering
         * connection (one thread, and nobody reads it), never to c->_in,
         * which an upload write may still borrow. */
        static char scratch[16 * 1024];
        *buf = uv_buf_init(scratch, sizeof scratch);
        return;
    }
    if (c->_in_off == c->_in_len)
        c->_in_off = c->_in_len = 0;
    if (c->_in_len == CONN_IN_BUF && c->_in_off > 0) {
        memmove(c->_in, c->_in + c->_in_off, c->_in_len - c->_in_off);
        c->_in_len -= c->_in_off;
        c->_in_off = 0;
    }
    *buf = uv_buf_init(c->_in + c->_in_len, (unsigned)(CONN_IN_BUF - c->_in_len));
}

/* nread bytes arrived in the buffer alloc_input gave, or the read side
 * ended (nread < 0), as libuv's read_cb reports it. */
static void received(conn *c, ssize_t nread) {
    if (nread == 0)
        return; /* EAGAIN: not end of file */
    if (nread < 0) {
        if (nread == UV_EOF)
            c->flags |= CONN_F_EOF;
        if (c->state != CONN_S_LINGER && (c->flags & CONN_F_STARTED))
            LOG(LOG_INFO, "conn=%llu peer=%s closed mid-request (%s)", (unsigned long long)c->id,
                c->peer, uv_err_name((int)nread));
        conn_close(c);
        return;
    }
    if (c->state == CONN_S_LINGER) {
        c->_linger_bytes += (uint64_t)nread;
        if (c->_linger_bytes > LINGER_MAX_BYTES)
            conn_close(c);
        return;
    }
    c->_in_len += (size_t)nread;
    io_timer_restart(c, c->server->cfg->idle_timeout_ms);
    process(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    alloc_input(h->data, buf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    received(st->data, nread);
}

size_t conn_feed(conn *c, const char *data, size_t len) {
    uv_buf_t b;
    assert(c->state != CONN_S_CLOSED && (c->flags & CONN_F_READING));
    alloc_input(c, &b);
    if (b.len == 0) {
        received(c, UV_ENOBUFS);
        return 0;
    }
    size_t n = len < b.len ? len : b.len;
    memcpy(b.base, data, n);
    received(c, (ssize_t)n);
    return n;
}

void conn_feed_end(conn *c, int err) {
    assert(c->state != CONN_S_CLOSED && (c->flags & CONN_F_READING) && err < 0);
    received(c, err);
}

static void on_body_written(upload *u, int status) {
    conn *c = u->data;
    c->flags &= ~CONN_F_WRITING_BODY;
    if (c->state == CONN_S_CLOSED || status == UV_ECANCELED) {
        conn_release(c);
        return;
    }
    if (status < 0) {
        char why[96];
        int code = util_storage_status(status);
        snprintf(why, sizeof why, "cannot store the upload: %s", uv_strerror(status));
        LOG(LOG_ERROR, "conn=%llu writing %s: %s", (unsigned long long)c->id,
            u->path ? u->path : "?", uv_strerror(status));
        metrics_count_reject(REJECT_STORAGE);
        conn_send_error(c, code, why, code == 503 ? "Retry-After: 1\r\n" : NULL);
        conn_release(c);
        return;
    }
    conn_release(c);
    conn_resume(c);
}

/* Acts on what a parser callback asked for; may resume parsing at once. */
static void run_action(conn *c) {
    conn_action a = c->_action;
    c->_action = CONN_ACT_NONE;
    switch (a) {
    case CONN_ACT_ERROR:
        conn_send_error(c, c->req.fail_status, c->req.fail_reason, c->req.fail_extra);
        return;
    case CONN_ACT_OPEN:
        routes_open_upload(c);
        return;
    case CONN_ACT_BODY:
        /* The write is in flight; reading stays off and the idle timer
         * waits (a slow disk is not the client's fault). */
        uv_timer_stop(&c->_io_timer);
        return;
    case CONN_ACT_DISPATCH:
        uv_timer_stop(&c->_req_timer);
        uv_timer_stop(&c->_io_timer);
        set_state(c, CONN_S_WORK);
        routes_dispatch(c);
        return;
    case CONN_ACT_NONE:
        break;
    }
    conn_send_error(c, 500, "internal error: parser paused without a reason", NULL);
}

void conn_resume(conn *c) {
    if (c->state != CONN_S_HEAD && c->state != CONN_S_BODY)
        return;
    c->flags &= ~CONN_F_PAUSED;
    llhttp_resume(&c->_parser);
    /* Run the parser even with no buffered byte: a pause inside a span
     * callback leaves llhttp before a step that needs no input (such as
     * on_message_complete after the last body byte). */
    c->_kick = 1;
    process(c);
}

static void process(conn *c) {
    while ((c->state == CONN_S_HEAD || c->state == CONN_S_BODY) &&
           !(c->flags & CONN_F_PAUSED) && (c->_in_off < c->_in_len || c->_kick)) {
        const char *p = c->_in + c->_in_off;
        c->_kick = 0;
        c->_action = CONN_ACT_NONE;
        llhttp_errno_t e = llhttp_execute(&c->_parser, p, c->_in_len - c->_in_off);
        if (e == HPE_OK) {
            c->_in_off = c->_in_len;
            break;
        }
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
            c->_in_off = (size_t)(llhttp_get_error_pos(&c->_parser) - c->_in);
            c->flags |= CONN_F_PAUSED;
            if (e == HPE_PAUSED_UPGRADE) {
                /* We never switch protocols; answer and close. */
                c->flags |= CONN_F_UPGRADE | CONN_F_CLOSE_AFTER;
                if (c->_action == CONN_ACT_NONE && (c->flags & CONN_F_MSG_DONE))
                    c->_action = CONN_ACT_DISPATCH;
            }
            run_action(c);
            continue;
        }
        if (e == HPE_USER) {
            run_action(c);
            return;
        }
        /* A protocol error: llhttp's reason is a constant string. */
        c->req.fail_status = 400;
        snprintf(c->req.fail_buf, sizeof c->req.fail_buf, "bad request: %s",
                 llhttp_get_error_reason(&c->_parser));
        conn_send_error(c, 400, c->req.fail_buf, NULL);
        return;
    }
    if (c->_in_off == c->_in_len)
        c->_in_off = c->_in_len = 0;
    if (c->state == CONN_S_BODY && !(c->flags & CONN_F_PAUSED) && upload_buffered(&c->up) > 0) {
        /* The input ran out before the body's end: put what the upload
         * buffered on disk now (one job creates the file if needed and
         * writes) rather than keep it while the client is slow. Reading
         * waits for it, as for any body write. A body that arrives whole in
         * one read never gets here: it reaches the store in the buffer. */
        if (upload_flush(&c->up, on_body_written) != 0) {
            conn_send_error(c, 500, "internal error: cannot write the upload", NULL);
            return;
        }
        conn_hold(c);
        c->flags |= CONN_F_WRITING_BODY | CONN_F_PAUSED;
        uv_timer_stop(&c->_io_timer);
    }
    update_reading(c);
}

/* ---- llhttp callbacks -------------------------------------------------- */

static conn *conn_of(llhttp_t *p) {
    return container_of(p, conn, _parser);
}

static int fail(conn *c, int status, const char *reason) {
    c->req.fail_status = status;
    c->req.fail_reason = reason;
    c->req.fail_extra = NULL;
    c->_action = CONN_ACT_ERROR;
    llhttp_set_error_reason(&c->_parser, reason);
    return HPE_USER;
}

static int count_head(conn *c, size_t len) {
    c->req.head_bytes += len;
    if (c->req.head_bytes > c->server->cfg->max_header_bytes)
        return fail(c, 431, "request head too large");
    return 0;
}

static int on_message_begin(llhttp_t *p) {
    conn *c = conn_of(p);
    c->flags |= CONN_F_STARTED;
    c->req.start_ms = uv_now(c->server->loop);
    uv_timer_start(&c->_req_timer, on_req_timeout, c->server->cfg->request_timeout_ms, 0);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
    conn *c = conn_of(p);
    size_t room = CONN_URL_MAX - c->req.url_len;
    size_t n = len < room ? len : room;
    memcpy(c->req.url + c->req.url_len, at, n);
    c->req.url_len += n;
    if (n < len)
        c->req.url_overflow = 1;
    return count_head(c, len);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
    conn *c = conn_of(p);
    if (c->req.in_value || (c->req.field_len == 0 && !c->req.field_overflow)) {
        /* A new header starts. */
        c->req.in_value = 0;
        c->req.field_len = 0;
        c->req.field_overflow = 0;
        if (++c->req.nheaders > c->server->cfg->max_headers)
            return fail(c, 431, "too many request headers");
    }
    /* RFC 9112 5.1: white space between a field name and the colon must be
     * refused with 400 (llhttp refuses it only in the names it knows, such
     * as Transfer-Encoding; a proxy in front may read others differently). */
    if (memchr(at, ' ', len) != NULL || memchr(at, '\t', len) != NULL)
        return fail(c, 400, "bad request: white space in a header name");
    size_t room = sizeof c->req.field - 1 - c->req.field_len;
    if (len > room) {
        c->req.field_overflow = 1;
    } else {
        memcpy(c->req.field + c->req.field_len, at, len);
        c->req.field_len += len;
    }
    return count_head(c, len);
}

static int header_id(const conn *c) {
    const char *f = c->req.field;
    size_t n = c->req.field_len;
    if (c->req.field_overflow)
        return HDR_OTHER;
    if (n == 13 && strncasecmp(f, "authorization", n) == 0)
        return HDR_AUTHORIZATION;
    if (n == 16 && strncasecmp(f, "content-encoding", n) == 0)
        return HDR_CONTENT_ENCODING;
    if (n == 6 && strncasecmp(f, "expect", n) == 0)
        return HDR_EXPECT;
    if (n == 17 && strncasecmp(f, "transfer-encoding", n) == 0)
        return HDR_TRANSFER_ENCODING;
    return HDR_OTHER;
}

static void append(char *dst, size_t cap, size_t *len, const char *at, size_t n, int *overflow) {
    if (n > cap - *len) {
        *overflow = 1;
        n = cap - *len;
    }
    memcpy(dst + *len, at, n);
    *len += n;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
    conn *c = conn_of(p);
    conn_request *r = &c->req;
    if (!r->in_value) {
        r->in_value = 1;
        r->cur_header = header_id(c);
        switch (r->cur_header) {
        case HDR_AUTHORIZATION:
            if (r->auth_seen)
                r->auth_dup = 1;
            r->auth_seen = 1;
            r->auth_len = 0;
            break;
        case HDR_CONTENT_ENCODING:
            if (r->encoding_len > 0)
                append(r->encoding, sizeof r->encoding - 1, &r->encoding_len, ",", 1,
                       &r->hval_overflow);
            break;
        case HDR_EXPECT:
            if (r->expect_len > 0)
                append(r->expect, sizeof r->expect - 1, &r->expect_len, ",", 1,
                       &r->hval_overflow);
            r->expect_seen = 1;
            break;
        case HDR_TRANSFER_ENCODING:
            if (r->te_len > 0)
                append(r->te, sizeof r->te - 1, &r->te_len, ",", 1, &r->hval_overflow);
            r->te_seen = 1;
            break;
        }
    }
    switch (r->cur_header) {
    case HDR_AUTHORIZATION:
        append(r->auth, CONN_HVAL_MAX, &r->auth_len, at, len, &r->auth_overflow);
        break;
    case HDR_CONTENT_ENCODING:
        append(r->encoding, sizeof r->encoding - 1, &r->encoding_len, at, len, &r->hval_overflow);
        break;
    case HDR_EXPECT:
        append(r->expect, sizeof r->expect - 1, &r->expect_len, at, len, &r->hval_overflow);
        break;
    case HDR_TRANSFER_ENCODING:
        append(r->te, sizeof r->te - 1, &r->te_len, at, len, &r->hval_overflow);
        break;
    }
    return count_head(c, len);
}

static int on_header_value_complete(llhttp_t *p) {
    /* An empty value never calls on_header_value; mark the header seen. */
    conn *c = conn_of(p);
    if (!c->req.in_value) {
        c->req.in_value = 1;
        c->req.cur_header = header_id(c);
        if (c->req.cur_header == HDR_AUTHORIZATION) {
            if (c->req.auth_seen)
                c->req.auth_dup = 1;
            c->req.auth_seen = 1;
            c->req.auth_len = 0;
        } else if (c->req.cur_header == HDR_EXPECT) {
            c->req.expect_seen = 1;
        } else if (c->req.cur_header == HDR_TRANSFER_ENCODING) {
            c->req.te_seen = 1;
        }
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    conn *c = conn_of(p);
    /* llhttp 6.1.1 defines its llhttp_get_* getters only for wasm builds,
     * so read the documented public fields directly. */
    c->req.method = p->method;
    if (p->upgrade)
        c->flags |= CONN_F_UPGRADE | CONN_F_CLOSE_AFTER;
    set_state(c, CONN_S_BODY);
    if (p->flags & F_CHUNKED)
        LOG(LOG_DEBUG, "conn=%llu body: chunked", (unsigned long long)c->id);
    else if (p->flags & F_CONTENT_LENGTH)
        LOG(LOG_DEBUG, "conn=%llu body: %llu bytes", (unsigned long long)c->id,
            (unsigned long long)p->content_length);
    return routes_headers(c);
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    conn *c = conn_of(p);
    /* llhttp flushes an open span at the end of every llhttp_execute(),
     * also an empty one (as after our zero-byte resume): nothing to do. */
    if (len == 0)
        return 0;
    c->req.body_bytes += len;
    g_metrics.bytes_received += len;
    if (c->req.body_bytes > c->server->cfg->max_body_bytes) {
        if (c->req.route == ROUTE_SUBMIT)
            metrics_count_reject(REJECT_BODY_TOO_LARGE);
        snprintf(c->req.fail_buf, sizeof c->req.fail_buf,
                 "request body larger than the limit of %llu bytes",
                 (unsigned long long)c->server->cfg->max_body_bytes);
        return fail(c, 413, c->req.fail_buf);
    }
    if (c->flags & CONN_F_DISCARD_BODY)
        return 0;
    int rc = upload_write(&c->up, at, len, on_body_written);
    if (rc == UPLOAD_BUFFERED)
        return 0; /* copied: the input buffer is free again, keep parsing */
    if (rc != 0)
        return fail(c, 500, "internal error: cannot write the upload");
    conn_hold(c);
    c->flags |= CONN_F_WRITING_BODY;
    c->_action = CONN_ACT_BODY;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p) {
    conn *c = conn_of(p);
    c->flags |= CONN_F_MSG_DONE;
    if (!llhttp_should_keep_alive(p))
        c->flags |= CONN_F_CLOSE_AFTER;
    c->_action = CONN_ACT_DISPATCH;
    return HPE_PAUSED;
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- accepting ----------------------------------------------------------- */

static void format_peer(conn *c) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->_tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
    }
    if (ss.ss_family == AF_INET6)
        snprintf(c->peer, sizeof c->peer, "[%s]:%d", host, port);
    else
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
}

/* ---- the TCP transport ---------------------------------------------------- */

static int tcp_read_start(conn *c) {
    return uv_read_start((uv_stream_t *)&c->_tcp, on_alloc, on_read);
}

static void tcp_read_stop(conn *c) {
    uv_read_stop((uv_stream_t *)&c->_tcp);
}

static int tcp_write(conn *c, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                     uv_write_cb cb) {
    return uv_write(req, (uv_stream_t *)&c->_tcp, bufs, nbufs, cb);
}

static int tcp_shutdown(conn *c, uv_shutdown_t *req, uv_shutdown_cb cb) {
    return uv_shutdown(req, (uv_stream_t *)&c->_tcp, cb);
}

static const conn_io tcp_io = {tcp_read_start, tcp_read_stop, tcp_write, tcp_shutdown};

/* ---- creating -------------------------------------------------------------- */

/* Allocates c with its handles initialised and links it into the server. */
static conn *create(server *s, const conn_io *io) {
    conn *c = xcalloc(1, sizeof *c);
    c->server = s;
    c->id = ++s->next_conn_id;
    c->_io = io;
    c->_in = xmalloc(CONN_IN_BUF);
    uv_tcp_init(s->loop, &c->_tcp);
    uv_timer_init(s->loop, &c->_io_timer);
    uv_timer_init(s->loop, &c->_req_timer);
    c->_tcp.data = c->_io_timer.data = c->_req_timer.data = c;
    c->_handles_open = 3;
    upload_init(&c->up, s->loop);
    c->up.data = c;
    llhttp_init(&c->_parser, HTTP_REQUEST, &parser_settings);
    reset_request(c);
    /* Link first, so conn_close can unlink on every path below. */
    c->_next = s->conns;
    if (s->conns)
        s->conns->_prev = c;
    s->conns = c;
    s->nconns++;
    g_metrics.connections++;
    return c;
}

/* The connection is up: refuse it past the limit, else start reading. */
static void start(conn *c) {
    server *s = c->server;
    g_metrics.connections_total++;
    set_state(c, CONN_S_HEAD);
    if (s->nconns > s->cfg->max_connections) {
        g_metrics.connections_refused++;
        LOG(LOG_WARN, "conn=%llu peer=%s refused: %llu connections open (PGOF_MAX_CONNECTIONS)",
            (unsigned long long)c->id, c->peer, (unsigned long long)s->nconns - 1);
        c->req.endpoint = EP_OTHER;
        conn_send_error(c, 503, "too many connections, try again later", "Retry-After: 1\r\n");
        return;
    }
    update_reading(c);
}

void conn_accept(server *s, uv_stream_t *listener) {
    conn *c = create(s, &tcp_io);
    if (uv_accept(listener, (uv_stream_t *)&c->_tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->_tcp, 1);
    format_peer(c);
    start(c);
}

conn *conn_new(server *s, const conn_io *io, const char *peer) {
    conn *c = create(s, io);
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    start(c);
    return c;
}
