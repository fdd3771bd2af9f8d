/*
 * upload.c: streaming a body into a temporary file (see upload.h).
 *
 * Loop thread, except discard_work which runs on the threadpool and only
 * touches its own job.
 */
#include "collector/upload.h"

#include "collector/util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct discard_job {
    uv_work_t work;
    int fd;
    char *path;
} discard_job;

/* Runs on the threadpool: close and unlink, ignoring errors (nothing to
 * tell anyone; the start-up sweep catches what is left). */
static void discard_work(uv_work_t *w) {
    discard_job *j = container_of(w, discard_job, work);
    util_pool_thread_init();
    if (j->fd >= 0)
        close(j->fd);
    if (j->path != NULL)
        unlink(j->path);
}

static void discard_after(uv_work_t *w, int status) {
    discard_job *j = container_of(w, discard_job, work);
    if (status == UV_ECANCELED) {
        /* Not run: do it here, the loop is ending anyway. */
        discard_work(w);
    }
    free(j->path);
    free(j);
}

void upload_discard(uv_loop_t *loop, int fd, char *path) {
    if (fd < 0 && path == NULL)
        return;
    discard_job *j = xcalloc(1, sizeof *j);
    j->fd = fd;
    j->path = path;
    if (uv_queue_work(loop, &j->work, discard_work, discard_after) != 0) {
        discard_work(&j->work);
        free(j->path);
        free(j);
    }
}

void upload_init(upload *u, uv_loop_t *loop) {
    memset(u, 0, sizeof *u);
    u->fd = -1;
    u->_loop = loop;
}

int upload_busy(const upload *u) {
    return u->_busy;
}

static void finish_op(upload *u, int status) {
    upload_cb cb = u->_cb;
    u->_busy = 0;
    u->_cb = NULL;
    if (u->_doomed) {
        u->_doomed = 0;
        upload_cleanup(u);
        status = UV_ECANCELED;
    }
    if (cb != NULL)
        cb(u, status);
}

static void on_open(uv_fs_t *req) {
    upload *u = container_of(req, upload, _req);
    int status = (int)req->result;
    uv_fs_req_cleanup(req);
    if (status >= 0) {
        u->fd = status;
        status = 0;
    } else {
        free(u->path);
        u->path = NULL;
    }
    finish_op(u, status);
}

int upload_open(upload *u, const char *dir, uint64_t id, upload_cb cb) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/" UPLOAD_TMP_PREFIX "%ld-%llu", dir, (long)getpid(),
                     (unsigned long long)id);
    if (n < 0 || (size_t)n >= sizeof path)
        return UV_ENAMETOOLONG;
    if (u->_busy || u->fd >= 0 || u->path != NULL)
        return UV_EBUSY;
    u->path = xstrdup(path);
    u->size = 0;
    u->_cb = cb;
    int rc = uv_fs_open(u->_loop, &u->_req, u->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                        0600, on_open);
    if (rc != 0) {
        free(u->path);
        u->path = NULL;
        u->_cb = NULL;
        return rc;
    }
    u->_busy = 1;
    return 0;
}

static void on_write(uv_fs_t *req) {
    upload *u = container_of(req, upload, _req);
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (r < 0) {
        finish_op(u, (int)r);
        return;
    }
    u->size += (uint64_t)r;
    u->_pending += r;
    u->_pending_len -= (size_t)r;
    if (u->_pending_len > 0 && !u->_doomed) {
        /* A short write (rare on regular files): write the rest. uv_fs_write
         * copies the uv_buf_t array, so a local one is fine. */
        uv_buf_t b = uv_buf_init((char *)u->_pending, (unsigned)u->_pending_len);
        int rc = uv_fs_write(u->_loop, &u->_req, u->fd, &b, 1, -1, on_write);
        if (rc == 0)
            return;
        finish_op(u, rc);
        return;
    }
    finish_op(u, 0);
}

int upload_write(upload *u, const char *data, size_t len, upload_cb cb) {
    if (u->_busy || u->fd < 0)
        return UV_EBUSY;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    u->_pending = data;
    u->_pending_len = len;
    u->_cb = cb;
    int rc = uv_fs_write(u->_loop, &u->_req, u->fd, &b, 1, -1, on_write);
    if (rc != 0) {
        u->_cb = NULL;
        return rc;
    }
    u->_busy = 1;
    return 0;
}

void upload_detach(upload *u, int *fd, char **path) {
    *fd = u->fd;
    *path = u->path;
    u->fd = -1;
    u->path = NULL;
    u->size = 0;
}

void upload_cleanup(upload *u) {
    if (u->_busy) {
        u->_doomed = 1;
        return;
    }
    int fd = u->fd;
    char *path = u->path;
    u->fd = -1;
    u->path = NULL;
    u->size = 0;
    upload_discard(u->_loop, fd, path);
}
