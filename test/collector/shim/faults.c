/*
 * faults.c: an LD_PRELOAD shim for test_collector_disk_faults.py: disk
 * failures that no loopback filesystem produces on demand.
 *
 * - While the file named by PGOF_TEST_FAIL_DIR_FSYNC exists, fsync() of a
 *   directory fails with EIO, as on a disk going bad.
 * - While the file named by PGOF_TEST_FAIL_UNLINK exists, unlink() of a
 *   stored profile (a "*.pgo" name not starting with '.') fails with EIO.
 * - While the file named by PGOF_TEST_FAIL_UPLOAD_WRITE exists, write(),
 *   writev(), pwrite() and pwritev() to an upload's temporary file (a
 *   regular file named ".pgof-tmp-*") fail with the errno named by
 *   PGOF_TEST_FAIL_UPLOAD_WRITE_ERRNO: ENOMEM, ENOSPC or EIO (the default).
 * Every other call goes to the C library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int flag_set(const char *var)
{
    const char *flag = getenv(var);
    return flag && access(flag, F_OK) == 0;
}

int fsync(int fd)
{
    static int (*real_fsync)(int);
    struct stat st;

    if (!real_fsync)
        real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (flag_set("PGOF_TEST_FAIL_DIR_FSYNC") && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}

int unlink(const char *path)
{
    static int (*real_unlink)(const char *);
    const char *base = strrchr(path, '/');
    size_t n;

    if (!real_unlink)
        real_unlink = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    base = base ? base + 1 : path;
    n = strlen(base);
    if (flag_set("PGOF_TEST_FAIL_UNLINK") && base[0] != '.' && n > 4 &&
        strcmp(base + n - 4, ".pgo") == 0) {
        errno = EIO;
        return -1;
    }
    return real_unlink(path);
}

/* Whether a write to fd should fail now; sets errno when it should. */
static int upload_write_fails(int fd)
{
    char link[64], path[4096];
    const char *base, *want;
    struct stat st;
    ssize_t n;

    if (!flag_set("PGOF_TEST_FAIL_UPLOAD_WRITE") || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, ".pgof-tmp-", 10) != 0)
        return 0;
    want = getenv("PGOF_TEST_FAIL_UPLOAD_WRITE_ERRNO");
    errno = want && strcmp(want, "ENOMEM") == 0   ? ENOMEM
            : want && strcmp(want, "ENOSPC") == 0 ? ENOSPC
                                                  : EIO;
    return 1;
}

#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (!real_##name) \
        real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(write);
    return upload_write_fails(fd) ? -1 : real_write(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    REAL(pwrite);
    return upload_write_fails(fd) ? -1 : real_pwrite(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    REAL(writev);
    return upload_write_fails(fd) ? -1 : real_writev(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    REAL(pwritev);
    return upload_write_fails(fd) ? -1 : real_pwritev(fd, iov, n, off);
}
