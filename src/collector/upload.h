/*
 * upload.h: a request body streamed into a temporary file.
 *
 * DESIGN
 * An upload owns one temporary file in the profile directory, named
 * ".pgof-tmp-<pid>-<id>" so it can never be taken for a profile (those end
 * in ".pgo" and do not start with a dot) and so start-up can sweep leftovers.
 * It runs one file operation at a time through uv_fs_* (so the loop thread
 * never blocks on disk). Writes borrow the caller's bytes until their
 * callback. upload_cleanup() is the single cleanup: it closes and unlinks
 * (on the threadpool), can run twice, and if an operation is in flight it
 * waits for it. upload_detach() hands the fd and path to a store job instead.
 *
 * Loop thread only.
 */
#ifndef COLLECTOR_UPLOAD_H
#define COLLECTOR_UPLOAD_H

#include <stdint.h>
#include <uv.h>

/* Prefix of every temporary file the collector creates. */
#define UPLOAD_TMP_PREFIX ".pgof-tmp-"

struct upload;
typedef void (*upload_cb)(struct upload *u, int status);

typedef struct upload {
    /* read-only */
    int fd;         /* -1 when closed */
    char *path;     /* owned; NULL when there is no file */
    uint64_t size;  /* bytes written so far */
    void *data;     /* for the owner */

    /* private */
    uv_loop_t *_loop;
    uv_fs_t _req;
    int _busy;      /* an fs request is in flight */
    int _doomed;    /* cleanup was asked while busy */
    upload_cb _cb;
    const char *_pending; /* borrowed bytes not yet written */
    size_t _pending_len;
} upload;

void upload_init(upload *u, uv_loop_t *loop);

/*
 * Creates the temporary file in dir (O_EXCL, mode 0600). cb(u, 0) or
 * cb(u, negative uv code) runs later. Returns 0 or a negative code (then cb
 * will not run).
 */
int upload_open(upload *u, const char *dir, uint64_t id, upload_cb cb);

/* Appends len bytes of data (borrowed until cb). Same return contract. */
int upload_write(upload *u, const char *data, size_t len, upload_cb cb);

/* Moves the fd and path to the caller (who must close/unlink them). */
void upload_detach(upload *u, int *fd, char **path);

/* Closes and removes the file, now or when the in-flight op ends. */
void upload_cleanup(upload *u);

/* Whether an fs request is still in flight. */
int upload_busy(const upload *u);

/*
 * Closes fd (if >= 0) and unlinks path (if not NULL) on the threadpool;
 * takes ownership of path. Used for files a job handed back.
 */
void upload_discard(uv_loop_t *loop, int fd, char *path);

#endif /* COLLECTOR_UPLOAD_H */
