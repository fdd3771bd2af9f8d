/*
 * upload.h: a request body streamed into a temporary file.
 *
 * DESIGN
 * An upload owns one temporary file in the profile directory, named
 * ".pgof-tmp-<pid>-<id>" so it can never be taken for a profile (those end
 * in ".pgo" and do not start with a dot) and so start-up can sweep leftovers.
 *
 * To save threadpool round trips, body bytes are copied into a small
 * buffer (at most UPLOAD_BUF_MAX) instead of written one read at a time.
 * The owner flushes it when the input runs out before the body ends
 * (upload_flush), and a write that would overflow it flushes it together
 * with the new bytes: either way one job creates the file if needed and
 * writes (writev). So a body that arrives whole in one read, as a typical
 * ~20 KB profile does, reaches the store in the buffer with no file yet,
 * and the store's one job creates the file, writes it, validates it and
 * fsyncs it (upload_detach hands over the buffer with the path). The file
 * is created either up front (upload_open, for Expect: 100-continue, so a
 * storage error is answered before the client sends the body) or lazily
 * (upload_prepare). Memory per upload stays bounded by UPLOAD_BUF_MAX.
 *
 * One file operation at a time runs on the threadpool (so the loop thread
 * never blocks on disk). Writes borrow the caller's bytes until their
 * callback. upload_cleanup() is the single cleanup: it frees the buffer,
 * closes and unlinks (on the threadpool), can run twice, and if an
 * operation is in flight it waits for it. upload_detach() hands the fd,
 * path and buffer to a store job instead.
 *
 * Loop thread only, except the work callbacks in upload.c, which touch only
 * the upload's private job fields while _busy is set.
 */
#ifndef COLLECTOR_UPLOAD_H
#define COLLECTOR_UPLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Prefix of every temporary file the collector creates. */
#define UPLOAD_TMP_PREFIX ".pgof-tmp-"

/* Body bytes an upload keeps in memory before it writes them to its file. */
#define UPLOAD_BUF_MAX (64 * 1024)

/* upload_write took the bytes into the buffer: no callback will run. */
#define UPLOAD_BUFFERED 1

struct upload;
typedef void (*upload_cb)(struct upload *u, int status);

typedef struct upload {
    /* read-only */
    int fd;         /* -1 when there is no open file */
    char *path;     /* owned; NULL when there is no upload */
    uint64_t size;  /* body bytes taken so far (written or buffered) */
    void *data;     /* for the owner */

    /* private */
    uv_loop_t *_loop;
    uv_fs_t _req;
    uv_work_t _work;
    int _busy;      /* an fs request or job is in flight */
    int _doomed;    /* cleanup was asked while busy */
    int _created;   /* this upload created path (so it may unlink it) */
    upload_cb _cb;
    char *_buf;     /* owned; the first body bytes, not yet written */
    size_t _buf_len, _buf_cap;
    /* the flush job (worker-owned while _busy) */
    const char *_pending; /* borrowed bytes written after _buf */
    size_t _pending_len;
    int _job_open;  /* the job must create the file first */
    int _job_fd;
    int _job_err;
} upload;

void upload_init(upload *u, uv_loop_t *loop);

/*
 * Creates the temporary file in dir (O_EXCL, mode 0600). cb(u, 0) or
 * cb(u, negative uv code) runs later. Returns 0 or a negative code (then cb
 * will not run).
 */
int upload_open(upload *u, const char *dir, uint64_t id, upload_cb cb);

/*
 * Names the temporary file in dir without creating it: the first write
 * that does not fit the buffer, or the store job, creates it. Returns 0 or
 * a negative code. size_hint (the declared Content-Length, or 0) sizes the
 * buffer.
 */
int upload_prepare(upload *u, const char *dir, uint64_t id, uint64_t size_hint);

/*
 * Appends len bytes of data. Returns UPLOAD_BUFFERED when they were copied
 * into the buffer (no callback); 0 when a write was started (data borrowed
 * until cb(u, 0 or negative code)); or a negative code (no callback).
 */
int upload_write(upload *u, const char *data, size_t len, upload_cb cb);

/* Bytes buffered and not yet written. */
size_t upload_buffered(const upload *u);

/*
 * Writes the buffered bytes to the file (creating it first if needed);
 * cb(u, 0 or negative code) runs later. Returns 0 or a negative code (then
 * cb will not run; UV_EINVAL if nothing is buffered).
 */
int upload_flush(upload *u, upload_cb cb);

/*
 * Moves the fd (-1 if the file was never created), the path and the
 * buffered bytes (NULL/0 if none; they belong after the file's contents) to
 * the caller, who must create, write, close and unlink as needed. *created
 * tells whether the file exists.
 */
void upload_detach(upload *u, int *fd, char **path, char **buf, size_t *len, int *created);

/* Frees the buffer, closes and removes the file, now or when the in-flight
 * op ends. */
void upload_cleanup(upload *u);

/* Whether an fs request is still in flight. */
int upload_busy(const upload *u);

/*
 * Closes fd (if >= 0) and unlinks path (if not NULL) on the threadpool;
 * takes ownership of path. Used for files a job handed back.
 */
void upload_discard(uv_loop_t *loop, int fd, char *path);

#endif /* COLLECTOR_UPLOAD_H */
