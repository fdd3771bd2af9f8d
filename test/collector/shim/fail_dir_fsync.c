/*
 * fail_dir_fsync.c: an LD_PRELOAD shim for test_collector_fsync_fault.py.
 *
 * While the file named by PGOF_TEST_FAIL_DIR_FSYNC exists, fsync() of a
 * directory fails with EIO, as on a disk that is going bad; every other
 * fsync, and every fsync once the file is gone, goes to the C library. It
 * lets a test reach the collector's "renamed into place, but the directory
 * is not durable" path, which no real loopback filesystem produces.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int fsync(int fd)
{
    static int (*real_fsync)(int);
    const char *flag = getenv("PGOF_TEST_FAIL_DIR_FSYNC");
    struct stat st;

    if (!real_fsync)
        real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (flag && access(flag, F_OK) == 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        errno = EIO;
        return -1;
    }
    return real_fsync(fd);
}
