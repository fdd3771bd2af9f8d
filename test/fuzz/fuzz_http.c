/*
 * fuzz_http.c: libFuzzer target over the collector's HTTP layer.
 *
 * DESIGN
 * Each input is the byte stream of one client connection. It goes through
 * the real state machine (src/collector/conn.c: input buffer, llhttp,
 * header limits, routes.c: routing, auth, Expect, Content-Encoding, declared
 * and counted body limits, upload.c: the body streamed to a temporary file,
 * store.c: validation, commit, merge, combine) with a memory transport in
 * place of the socket (conn_io, conn_feed). Nothing is stubbed: file
 * operations and store jobs run on the real libuv loop and threadpool,
 * against a scratch profile directory that is emptied after every input, so
 * each input starts from the same state and a finding reproduces alone.
 *
 * The first byte chooses how the stream is cut into reads (1, 7, 64 or
 * 4096 bytes at a time, so every parser state meets a read boundary), whether
 * the transport's writes fail (EPIPE: the client went away while we answer),
 * and whether the stream ends with EOF or a reset. The pump delivers input
 * only while the connection reads, completes writes after the call that
 * started them returned (as libuv does), and runs the loop only while a file
 * or store operation is in flight.
 *
 * Findings besides sanitizer reports and leaks (abort()):
 *   - an answer that does not start "HTTP/1.1 <3 digits> ",
 *   - a 500 saying "internal error" (our bug, never the client's),
 *   - a connection that neither reads, nor writes, nor waits for anything
 *     (it would hang until a timeout),
 *   - the store still busy after the connection is gone.
 *
 * Keys: submit "k", merge "m" (the seed corpus test/fuzz/corpus/http/ uses
 * them). Limits are small so that 413 and 431 are reachable.
 */
#include "collector/config.h"
#include "collector/conn.h"
#include "collector/keys.h"
#include "collector/log.h"
#include "collector/server.h"
#include "collector/store.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static config cfg;
static char dir[256];

/* ---- the memory transport ------------------------------------------------ */

typedef struct pending_op {
    uv_write_t *w;
    uv_write_cb wcb;
    uv_shutdown_t *sh;
    uv_shutdown_cb scb;
} pending_op;

static struct {
    pending_op ops[8];
    unsigned head, n;
    int fail_writes;
    int shut; /* our write side is shut down */
} io;

static int m_read_start(conn *c) {
    (void)c;
    return 0;
}

static void m_read_stop(conn *c) {
    (void)c;
}

/* Checks one answer's head: "HTTP/1.1 NNN " and no internal error. */
static void check_answer(const uv_buf_t *bufs, unsigned nbufs) {
    const char *h = bufs[0].base;
    size_t n = bufs[0].len;
    if (n < 13 || memcmp(h, "HTTP/1.1 ", 9) != 0 || h[9] < '1' || h[9] > '5' || h[10] < '0' ||
        h[10] > '9' || h[11] < '0' || h[11] > '9' || h[12] != ' ')
        abort();
    if (memcmp(h + 9, "100 ", 4) != 0 && (n < 4 || memcmp(h + n - 4, "\r\n\r\n", 4) != 0))
        abort();
    if (memcmp(h + 9, "500 ", 4) == 0 && nbufs > 1 && bufs[1].len >= 14 &&
        memcmp(bufs[1].base, "internal error", 14) == 0) {
        fprintf(stderr, "fuzz_http: %.*s\n", (int)bufs[1].len, bufs[1].base);
        abort();
    }
}

static int m_write(conn *c, uv_write_t *req, const uv_buf_t *bufs, unsigned nbufs,
                   uv_write_cb cb) {
    (void)c;
    if (io.shut || nbufs == 0 || io.n == sizeof io.ops / sizeof io.ops[0])
        abort(); /* writing after shutdown, or an unbounded queue */
    check_answer(bufs, nbufs);
    pending_op *op = &io.ops[(io.head + io.n++) % 8];
    memset(op, 0, sizeof *op);
    op->w = req;
    op->wcb = cb;
    return 0;
}

static int m_shutdown(conn *c, uv_shutdown_t *req, uv_shutdown_cb cb) {
    (void)c;
    if (io.shut || io.n == sizeof io.ops / sizeof io.ops[0])
        abort();
    io.shut = 1;
    pending_op *op = &io.ops[(io.head + io.n++) % 8];
    memset(op, 0, sizeof *op);
    op->sh = req;
    op->scb = cb;
    return 0;
}

static const conn_io mem_io = {m_read_start, m_read_stop, m_write, m_shutdown};

/*
 * Completes pending writes and runs the loop until the connection wants
 * input or is gone. A closed connection's pending writes complete with
 * UV_ECANCELED before its handles finish closing, as with a real stream.
 */
static void settle(server *s) {
    for (;;) {
        if (io.n > 0) {
            pending_op op = io.ops[io.head];
            io.head = (io.head + 1) % 8;
            io.n--;
            int st = s->nconns == 0 ? UV_ECANCELED : (op.w && io.fail_writes) ? UV_EPIPE : 0;
            if (op.w)
                op.wcb(op.w, st);
            else
                op.scb(op.sh, st);
            continue;
        }
        if (s->nconns == 0)
            return;
        conn *c = s->conns;
        if (c->flags & CONN_F_READING)
            return;
        if (c->_busy > 0 || upload_busy(&c->up) || store_busy(s->store)) {
            uv_run(&loop, UV_RUN_ONCE);
            continue;
        }
        fprintf(stderr, "fuzz_http: connection stuck in state %d flags %#x\n", c->state,
                c->flags);
        abort();
    }
}

/* ---- the scratch directory ----------------------------------------------- */

static void empty_dir(const char *path, int remove_self) {
    DIR *d = opendir(path);
    struct dirent *e;
    char sub[512];
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            empty_dir(sub, 1);
        else
            unlink(sub);
    }
    closedir(d);
    if (remove_self)
        rmdir(path);
}

static void at_exit(void) {
    empty_dir(dir, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[CONFIG_ERR_MAX];
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/pgof-fuzz-http-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    atexit(at_exit);
    setenv("PGOF_DIRECTORY", dir, 1);
    setenv("PGOF_MAX_BODY_BYTES", "16K", 1);
    setenv("PGOF_MAX_PROFILE_BYTES", "1M", 1);
    setenv("PGOF_MAX_HEADER_BYTES", "4K", 1);
    setenv("PGOF_MAX_HEADERS", "16", 1);
    if (config_load(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    /* Quiet unless asked (FUZZ_HTTP_LOG=debug): a line per request is slow. */
    const char *lv = getenv("FUZZ_HTTP_LOG");
    log_level = lv ? log_parse_level(lv) : -1;
    if (uv_loop_init(&loop) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const size_t cuts[4] = {1, 7, 64, 4096};
    char err[128];
    server s;
    if (size < 1)
        return 0;
    unsigned opts = data[0];
    data++;
    size--;
    size_t cut = cuts[opts & 3];

    memset(&s, 0, sizeof s);
    s.loop = &loop;
    s.cfg = &cfg;
    s.limits.max_inflated = cfg.max_profile_bytes;
    s.limits.max_memory = cfg.max_profile_memory;
    if (keys_parse("k\n", 2, &s.submit_keys, err, sizeof err) != 0 ||
        keys_parse("m\n", 2, &s.merge_keys, err, sizeof err) != 0)
        abort();
    s.store = store_new(&loop, dir, &s.limits);
    store_start(s.store);
    while (store_busy(s.store))
        uv_run(&loop, UV_RUN_ONCE);

    memset(&io, 0, sizeof io);
    io.fail_writes = (opts & 4) != 0;
    conn_new(&s, &mem_io, "fuzz");
    size_t off = 0;
    for (;;) {
        settle(&s);
        if (s.nconns == 0)
            break;
        conn *c = s.conns;
        if (off == size) {
            conn_feed_end(c, (opts & 8) ? UV_ECONNRESET : UV_EOF);
            continue;
        }
        size_t n = size - off < cut ? size - off : cut;
        off += conn_feed(c, (const char *)data + off, n);
    }
    settle(&s);
    /* The connection is closed: its handles, the upload's discard and any
     * store job still finish on the loop (no timer is left to wait for). */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (store_busy(s.store) || io.n != 0)
        abort();
    store_free(s.store);
    keys_free(s.submit_keys);
    keys_free(s.merge_keys);
    empty_dir(dir, 0);
    return 0;
}
