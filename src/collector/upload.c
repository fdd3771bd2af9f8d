/*
 * upload.c: streaming a body into a temporary file (see upload.h).
 *
 * Loop thread, except discard_work and flush_work, which run on the
 * threadpool: discard_work touches only its own job, flush_work only the
 * upload's job fields (_buf, _pending, _job_*), which the loop leaves alone
 * while _busy is set.
 */
#include "collector/upload.h"

#include "collector/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
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
    u->_job_fd = -1;
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
        u->_created = 1;
        status = 0;
    } else {
        free(u->path);
        u->path = NULL;
    }
    finish_op(u, status);
}

static int set_path(upload *u, const char *dir, uint64_t id) {
    /* Loop thread only; the collector never forks. One system call less
     * per upload (glibc no longer caches the pid). */
    static long pid;
    char path[4096];
    if (pid == 0)
        pid = (long)getpid();
    int n = snprintf(path, sizeof path, "%s/" UPLOAD_TMP_PREFIX "%ld-%llu", dir, pid,
                     (unsigned long long)id);
    if (n < 0 || (size_t)n >= sizeof path)
        return UV_ENAMETOOLONG;
    if (u->_busy || u->fd >= 0 || u->path != NULL || u->_buf != NULL)
        return UV_EBUSY;
    u->path = xstrdup(path);
    u->size = 0;
    u->_created = 0;
    return 0;
}

int upload_open(upload *u, const char *dir, uint64_t id, upload_cb cb) {
    int rc = set_path(u, dir, id);
    if (rc != 0)
        return rc;
    u->_cb = cb;
    rc = uv_fs_open(u->_loop, &u->_req, u->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600,
                    on_open);
    if (rc != 0) {
        free(u->path);
        u->path = NULL;
        u->_cb = NULL;
        return rc;
    }
    u->_busy = 1;
    return 0;
}

int upload_prepare(upload *u, const char *dir, uint64_t id, uint64_t size_hint) {
    int rc = set_path(u, dir, id);
    if (rc != 0)
        return rc;
    /* A declared length that fits sizes the buffer exactly; otherwise
     * start small and grow up to the cap. */
    u->_buf_cap = size_hint > 0 && size_hint <= UPLOAD_BUF_MAX ? (size_t)size_hint : 0;
    return 0;
}

/* Runs on the threadpool: creates the file if asked, then writes the
 * buffered bytes and the pending ones, retrying short writes. */
static void flush_work(uv_work_t *w) {
    upload *u = container_of(w, upload, _work);
    util_pool_thread_init();
    u->_job_err = 0;
    if (u->_job_open) {
        u->_job_fd = open(u->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (u->_job_fd < 0) {
            u->_job_err = -errno;
            return;
        }
    }
    struct iovec iov[2] = {{u->_buf, u->_buf_len}, {(void *)u->_pending, u->_pending_len}};
    struct iovec *v = iov[0].iov_len > 0 ? iov : iov + 1;
    int nv = (int)(iov + 2 - v);
    while (nv > 0 && v->iov_len > 0) {
        ssize_t r = writev(u->_job_fd, v, nv);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            u->_job_err = -errno;
            return;
        }
        while (nv > 0 && (size_t)r >= v->iov_len) {
            r -= (ssize_t)v->iov_len;
            v++;
            nv--;
        }
        if (nv > 0) {
            v->iov_base = (char *)v->iov_base + r;
            v->iov_len -= (size_t)r;
        }
    }
}

static void flush_after(uv_work_t *w, int status) {
    upload *u = container_of(w, upload, _work);
    int err = status == UV_ECANCELED ? UV_ECANCELED : u->_job_err;
    if (u->_job_open && status != UV_ECANCELED) {
        if (u->_job_fd >= 0) {
            u->fd = u->_job_fd;
            u->_created = 1;
        } else {
            /* O_EXCL failed: the name is not ours to unlink. */
            free(u->path);
            u->path = NULL;
        }
    }
    u->_job_open = 0;
    u->_job_fd = -1;
    if (err == 0)
        u->size += u->_pending_len;
    u->_buf_len = 0; /* the buffer stays for the next bytes */
    u->_pending = NULL;
    u->_pending_len = 0;
    finish_op(u, err);
}

/* Starts the job that writes the buffered bytes and then len bytes of data
 * (borrowed until cb), creating the file first if needed. */
static int start_flush(upload *u, const char *data, size_t len, upload_cb cb) {
    u->_job_open = u->fd < 0;
    u->_job_fd = u->fd;
    u->_pending = data;
    u->_pending_len = len;
    u->_cb = cb;
    int rc = uv_queue_work(u->_loop, &u->_work, flush_work, flush_after);
    if (rc != 0) {
        u->_cb = NULL;
        u->_pending = NULL;
        u->_pending_len = 0;
        u->_job_open = 0;
        return rc;
    }
    u->_busy = 1;
    return 0;
}

int upload_write(upload *u, const char *data, size_t len, upload_cb cb) {
    if (u->_busy || u->path == NULL)
        return UV_EBUSY;
    if (u->_buf_len + len <= UPLOAD_BUF_MAX) {
        if (u->_buf_len + len > u->_buf_cap || u->_buf == NULL) {
            size_t cap = u->_buf_cap > 0 ? u->_buf_cap : 16 * 1024;
            while (cap < u->_buf_len + len)
                cap *= 2;
            if (cap > UPLOAD_BUF_MAX)
                cap = UPLOAD_BUF_MAX;
            u->_buf = xrealloc(u->_buf, cap);
            u->_buf_cap = cap;
        }
        memcpy(u->_buf + u->_buf_len, data, len);
        u->_buf_len += len;
        u->size += len;
        return UPLOAD_BUFFERED;
    }
    /* Past the buffer: one job writes the buffered bytes, then these in
     * place, in order. */
    return start_flush(u, data, len, cb);
}

size_t upload_buffered(const upload *u) {
    return u->_buf_len;
}

int upload_flush(upload *u, upload_cb cb) {
    if (u->_busy || u->path == NULL)
        return UV_EBUSY;
    if (u->_buf_len == 0)
        return UV_EINVAL;
    return start_flush(u, NULL, 0, cb);
}

void upload_detach(upload *u, int *fd, char **path, char **buf, size_t *len, int *created) {
    *fd = u->fd;
    *path = u->path;
    *buf = u->_buf;
    *len = u->_buf_len;
    *created = u->_created;
    u->fd = -1;
    u->path = NULL;
    u->_buf = NULL;
    u->_buf_len = u->_buf_cap = 0;
    u->size = 0;
    u->_created = 0;
}

void upload_cleanup(upload *u) {
    if (u->_busy) {
        u->_doomed = 1;
        return;
    }
    int fd = u->fd;
    char *path = u->path;
    if (!u->_created && path != NULL) {
        /* Never created: nothing on disk to remove. */
        free(path);
        path = NULL;
    }
    free(u->_buf);
    u->_buf = NULL;
    u->_buf_len = u->_buf_cap = 0;
    u->fd = -1;
    u->path = NULL;
    u->size = 0;
    u->_created = 0;
    upload_discard(u->_loop, fd, path);
}
