/*
 * faults.c: an LD_PRELOAD shim for test_collector_disk_faults.py: disk
 * failures that no loopback filesystem produces on demand.
 *
 * - While the file named by PGOF_TEST_FAIL_DIR_FSYNC exists, fsync() of a
 *   directory fails with EIO, as on a disk going bad.
 * - While the file named by PGOF_TEST_FAIL_UNLINK exists, unlink() of a
 *   stored profile (a "*.pgo" name not starting with '.') fails with EIO.
 * Every other call goes to the C library.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
