/*
 * conn.h: one client connection and its HTTP/1.x state machine.
 *
 * DESIGN
 * A conn owns its uv_tcp_t, its llhttp_t, two timers, an input buffer and
 * the upload of the request in progress. It handles one request at a time:
 * the parser is paused (HPE_PAUSED) at the end of every message, so
 * pipelined requests wait in the input buffer until the answer to the
 * previous one is written. The states:
 *
 *   HEAD  --headers done-->  BODY  --message done-->  WORK  --answer-->  WRITE
 *     ^                                                                   |
 *     +------------------------ keep-alive -------------------------------+
 *   any --send_error--> WRITE (Connection: close) --> LINGER --> closed
 *
 * HEAD is also the keep-alive idle state. In LINGER the write side is shut
 * down and input is read and dropped for a short while, so a client that is
 * still sending a refused body reads our answer instead of a reset.
 *
 * Body bytes go from the input buffer to the upload (upload.h): the first
 * UPLOAD_BUF_MAX bytes are copied into its small buffer and parsing goes
 * on; past that, on_body starts a write of the bytes in place and returns
 * HPE_PAUSED; reading stops until the write completes, then parsing resumes
 * from llhttp_get_error_pos(). So a body is never held whole in memory
 * beyond that bounded buffer, and the input buffer is never overwritten
 * under a pending write.
 *
 * Timeouts: _io_timer fires when no byte moves for idle_timeout (keep-alive
 * idle, a stalled upload, a client not reading our answer); _req_timer fires
 * when a request is not fully received within request_timeout of its first
 * byte (a client that trickles bytes).
 *
 * Lifetime: conn_close() calls uv_close on the three handles; the struct is
 * freed once all three close_cbs have run and no async operation (file
 * open/write, store job) still refers to it (_busy == 0). Everything here
 * runs on the loop thread.
 *
 * Transport: the state machine reaches the socket only through a conn_io
 * (start/stop reading, write, shutdown). The server's is TCP (conn_accept);
 * the HTTP fuzz target (test/fuzz/fuzz_http.c) plugs in one that keeps
 * writes in memory and hands input in with conn_feed(), so every byte takes
 * the same path (input buffer, llhttp, routes, upload, store) as on a
 * socket. _tcp is still initialised then (never connected) so that closing
 * is the same on both.
 */
#ifndef COLLECTOR_CONN_H
#define COLLECTOR_CONN_H

#include "collector/upload.h"
#include "llhttp.h"

#include <stdint.h>
#include <uv.h>

struct server;
struct conn;

/*
 * The transport under a conn. Each op has the contract of the libuv call it
 * stands for: write borrows bufs' bytes (not the array) until cb, and cb
 * runs later, never from inside write; shutdown likewise. read_start means
 * "deliver input": the TCP transport calls uv_read_start; others call
 * conn_feed() / conn_feed_end() while c->flags has CONN_F_READING.
 */
typedef struct conn_io {
    int (*read_start)(struct conn *c);
    void (*read_stop)(struct conn *c);
    int (*write)(struct conn *c, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                 uv_write_cb cb);
    int (*shutdown)(struct conn *c, uv_shutdown_t *req, uv_shutdown_cb cb);
} conn_io;

typedef enum conn_state {
    CONN_S_HEAD,
    CONN_S_BODY,
    CONN_S_WORK,
    CONN_S_WRITE,
    CONN_S_LINGER,
    CONN_S_CLOSED,
} conn_state;

/* flags */
#define CONN_F_READING 0x0001      /* uv_read_start is active */
#define CONN_F_PAUSED 0x0002       /* llhttp returned HPE_PAUSED */
#define CONN_F_CLOSE_AFTER 0x0004  /* close once the answer is written */
#define CONN_F_MSG_DONE 0x0008     /* on_message_complete ran */
#define CONN_F_WRITING_BODY 0x0010 /* an upload write is in flight */
#define CONN_F_DISCARD_BODY 0x0020 /* body bytes are counted and dropped */
#define CONN_F_CONTINUE 0x0040     /* client sent Expect: 100-continue */
#define CONN_F_STARTED 0x0080      /* a request's first byte arrived */
#define CONN_F_UPGRADE 0x0100      /* llhttp saw an upgrade: close after */
#define CONN_F_EOF 0x0200          /* peer shut down its write side */

/* What a parser callback asks the loop to do once llhttp_execute returns. */
typedef enum conn_action {
    CONN_ACT_NONE,
    CONN_ACT_ERROR,     /* answer req.fail_status / req.fail_reason */
    CONN_ACT_OPEN,      /* open the upload's temporary file */
    CONN_ACT_BODY,      /* a body write was started */
    CONN_ACT_DISPATCH,  /* the message is complete: run the endpoint */
} conn_action;

/* Which header a value belongs to, while it is being read. */
enum {
    HDR_OTHER,
    HDR_AUTHORIZATION,
    HDR_CONTENT_ENCODING,
    HDR_EXPECT,
    HDR_TRANSFER_ENCODING,
};

#define CONN_URL_MAX 2048
#define CONN_HVAL_MAX 600 /* > "Bearer " + KEYS_MAX_LEN */

typedef struct conn_request {
    int method;
    int endpoint;      /* EP_* from metrics.h */
    int route;         /* ROUTE_* from routes.h */
    int and_combine;
    uint64_t start_ms; /* uv_now at the first byte */
    uint64_t body_bytes;
    size_t head_bytes;
    uint64_t nheaders;

    char url[CONN_URL_MAX + 1];
    size_t url_len;
    int url_overflow;

    char field[32];
    size_t field_len;
    int field_overflow;
    int cur_header; /* HDR_* of the value being read */
    int in_value;   /* the last callback was on_header_value */

    char auth[CONN_HVAL_MAX + 1];
    size_t auth_len;
    int auth_seen, auth_overflow, auth_dup;
    char encoding[64];
    size_t encoding_len;
    char expect[64];
    size_t expect_len;
    int expect_seen;
    char te[64]; /* Transfer-Encoding, repeated headers joined by "," */
    size_t te_len;
    int te_seen;
    int hval_overflow; /* encoding, expect or te overflowed */

    int fail_status;
    const char *fail_reason; /* static string, or fail_buf */
    const char *fail_extra;  /* extra header lines for the error answer */
    char fail_buf[160];      /* or a formatted one */
    const char *reject;      /* short reason for the access log, if any */

    int status; /* answered status, for the log */
    uint64_t resp_bytes;
} conn_request;

typedef struct conn {
    /* public, read-only */
    struct server *server;
    uint64_t id;
    char peer[64];
    conn_state state;
    unsigned flags;
    conn_request req;
    upload up;

    /* private */
    const conn_io *_io;
    struct conn *_next, *_prev;
    uv_tcp_t _tcp;
    uv_timer_t _io_timer;
    uv_timer_t _req_timer;
    llhttp_t _parser;
    conn_action _action;
    int _kick; /* call llhttp_execute once even with nothing buffered */
    int _handles_open; /* handles not yet through close_cb */
    int _busy;         /* async operations that will call back into us */
    uv_write_t _write_req;
    uv_write_t _cont_req;
    uv_shutdown_t _shutdown_req;
    int _cont_pending;
    char _head[512]; /* response head being written */
    void (*_body_free)(void *);
    void *_body_owner;
    char *_in;       /* input buffer */
    size_t _in_off;  /* first byte not yet parsed */
    size_t _in_len;  /* bytes in the buffer */
    uint64_t _linger_bytes;
} conn;

/* Accepts one pending connection from the server's listener. */
void conn_accept(struct server *s, uv_stream_t *listener);

/*
 * Creates a connection over another transport (peer is a label for the log)
 * and starts it as conn_accept would: linked into the server, refused with
 * 503 past PGOF_MAX_CONNECTIONS, else reading. The server owns it; it is
 * freed after it closes, so a caller may touch it only while it is open
 * (s->nconns counts it).
 */
conn *conn_new(struct server *s, const conn_io *io, const char *peer);

/*
 * Hands input to c as one read of a socket would: copies as much of data as
 * the input buffer takes and parses it. Returns the bytes taken (0: the
 * buffer is full, and c is closed as libuv does on UV_ENOBUFS). Only while
 * c->flags has CONN_F_READING.
 */
size_t conn_feed(conn *c, const char *data, size_t len);

/* The read side ended: err is UV_EOF or another negative code. */
void conn_feed_end(conn *c, int err);

/* Closes c at once (no answer). Safe to call twice and in any state. */
void conn_close(conn *c);

/*
 * Writes a complete answer. ctype may be NULL (no Content-Type). extra is
 * zero or more header lines, each ending in "\r\n" (may be NULL). The body
 * is borrowed until the write completes; then body_free(body_owner) runs if
 * body_free is set. For HEAD requests only the head is sent.
 */
void conn_send(conn *c, int status, const char *ctype, const char *extra,
               const void *body, size_t len, void (*body_free)(void *),
               void *body_owner);

/*
 * The one place errors become HTTP: stops reading, answers status with the
 * one-line reason as text/plain and Connection: close, counts the status,
 * and lingers before closing. extra as for conn_send.
 */
void conn_send_error(conn *c, int status, const char *reason, const char *extra);

/* Sends "100 Continue" (when the client asked and the body is wanted). */
void conn_send_continue(conn *c);

/* An async operation that will call back into c starts / has finished. */
void conn_hold(conn *c);
void conn_release(conn *c);

/* Continues parsing after an async step (file open, body write). */
void conn_resume(conn *c);

/* Closes c if it sits idle between requests (used by shutdown). */
void conn_close_if_idle(conn *c);

#endif /* COLLECTOR_CONN_H */
