/*
 * disk.c: the profile directory's on-disk protocol (see disk.h).
 *
 * Runs on the threadpool (and in unit tests). Blocking calls are expected
 * here; nothing here touches libuv handles, the loop or a connection, and
 * nothing logs: messages go back through err/msg buffers.
 */
#include "collector/disk.h"

#include "collector/upload.h"
#include "collector/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

void (*disk__combine_hook)(int step);

static void hook(int step) {
    if (disk__combine_hook != NULL)
        disk__combine_hook(step);
}

int disk_is_profile_name(const char *name) {
    size_t n = strlen(name);
    return n > 4 && name[0] != '.' && strcmp(name + n - 4, ".pgo") == 0 &&
           n < DISK_NAME_MAX;
}

int disk_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

void disk_start_write_out(int fd) {
    (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

int disk_write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int join(char *out, size_t outsz, const char *dir, const char *name) {
    int n = snprintf(out, outsz, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= outsz) ? UV_ENAMETOOLONG : 0;
}

int disk_sweep_temps(const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    int count = 0;
    if (d == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return -errno;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        if (strncmp(e->d_name, UPLOAD_TMP_PREFIX, sizeof UPLOAD_TMP_PREFIX - 1) != 0)
            continue;
        if (join(path, sizeof path, dir, e->d_name) == 0 && unlink(path) == 0)
            count++;
    }
    closedir(d);
    return count;
}

static int cmp_files(const void *a, const void *b) {
    return strcmp(((const disk_file *)a)->name, ((const disk_file *)b)->name);
}

int disk_list_profiles(const char *dir, disk_file **files, size_t *n, char *err,
                       size_t errlen) {
    DIR *d = opendir(dir);
    disk_file *v = NULL;
    size_t len = 0, cap = 0;
    if (d == NULL) {
        int rc = -errno;
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return rc;
    }
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (!disk_is_profile_name(e->d_name))
            continue;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        /* disk_is_profile_name() bounded the length. */
        memcpy(v[len].name, e->d_name, strlen(e->d_name) + 1);
        v[len].size = (uint64_t)st.st_size;
        len++;
    }
    closedir(d);
    if (len > 1)
        qsort(v, len, sizeof *v, cmp_files);
    *files = v;
    *n = len;
    return 0;
}

int disk_quarantine(const char *dir, const char *name, char *err, size_t errlen) {
    char qdir[4096], from[4096], to[4200];
    if (join(qdir, sizeof qdir, dir, DISK_QUARANTINE) != 0 ||
        join(from, sizeof from, dir, name) != 0) {
        snprintf(err, errlen, "path too long");
        return UV_ENAMETOOLONG;
    }
    if (mkdir(qdir, 0700) != 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, errlen, "cannot create %s: %s", qdir, strerror(errno));
        return rc;
    }
    /* Never overwrite an earlier quarantined file of the same name. */
    for (int i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(to, sizeof to, "%s/%s", qdir, name);
        else
            snprintf(to, sizeof to, "%s/%s.%d", qdir, name, i);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) {
            disk_fsync_dir(qdir);
            disk_fsync_dir(dir);
            return 0;
        }
        if (errno != EEXIST) {
            int rc = -errno;
            snprintf(err, errlen, "cannot move %s to %s: %s", from, qdir, strerror(errno));
            return rc;
        }
    }
    snprintf(err, errlen, "cannot find a free name in %s", qdir);
    return UV_EEXIST;
}

/* rename without replacing; falls back to link+unlink where the file
 * system lacks RENAME_NOREPLACE. */
static int rename_noreplace(const char *from, const char *to) {
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    if (link(from, to) != 0)
        return -errno;
    unlink(from);
    return 0;
}

static int pick_name(const char *dir, const char *prefix, uint64_t *counter, char *name,
                     char *path, size_t pathsz) {
    snprintf(name, DISK_NAME_MAX, "%s%llu_%llu.pgo", prefix,
             (unsigned long long)util_now_ms(), (unsigned long long)(*counter)++);
    return join(path, pathsz, dir, name);
}

int disk_place(const char *dir, const char *tmp_path, const char *prefix, uint64_t *counter,
               char *name, char *err, size_t errlen) {
    char path[4096];
    int rc;
    for (int tries = 0;; tries++) {
        if ((rc = pick_name(dir, prefix, counter, name, path, sizeof path)) != 0) {
            snprintf(err, errlen, "path too long");
            return rc;
        }
        rc = rename_noreplace(tmp_path, path);
        if (rc == 0)
            break;
        if (rc != UV_EEXIST || tries > 1000) {
            snprintf(err, errlen, "cannot rename into %s: %s", path, uv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

int disk_commit(const char *dir, const char *tmp_path, const char *prefix,
                uint64_t *counter, char *name, char *err, size_t errlen) {
    int rc = disk_place(dir, tmp_path, prefix, counter, name, err, errlen);
    if (rc != 0)
        return rc;
    rc = disk_fsync_dir(dir);
    if (rc != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", dir, uv_strerror(rc));
        return rc;
    }
    return 0;
}

int disk_gzip_fd(int in_fd, int out_fd, char *err, size_t errlen) {
    unsigned char in[64 * 1024], out[64 * 1024];
    z_stream zs;
    int rc = 0;
    memset(&zs, 0, sizeof zs);
    /* windowBits 15 + 16: a gzip wrapper, as Go's runtime/pprof writes. */
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        snprintf(err, errlen, "zlib: cannot initialise");
        return UV_ENOMEM;
    }
    if (lseek(in_fd, 0, SEEK_SET) < 0) {
        rc = -errno;
        snprintf(err, errlen, "seek: %s", strerror(errno));
        goto done;
    }
    int flush = Z_NO_FLUSH;
    do {
        ssize_t n = read(in_fd, in, sizeof in);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            snprintf(err, errlen, "read: %s", strerror(errno));
            goto done;
        }
        zs.next_in = in;
        zs.avail_in = (uInt)n;
        flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
        do {
            zs.next_out = out;
            zs.avail_out = sizeof out;
            deflate(&zs, flush);
            size_t have = sizeof out - zs.avail_out;
            if ((rc = disk_write_all(out_fd, out, have)) != 0) {
                snprintf(err, errlen, "write: %s", uv_strerror(rc));
                goto done;
            }
        } while (zs.avail_out == 0);
    } while (flush != Z_FINISH);
done:
    deflateEnd(&zs);
    return rc;
}

/* Writes data to a new temporary file in dir, fsync'd; path out. */
static int write_temp(const char *dir, const char *tag, const void *data, size_t len,
                      char *path, size_t pathsz) {
    int n = snprintf(path, pathsz, "%s/" UPLOAD_TMP_PREFIX "%s-%ld", dir, tag, (long)getpid());
    if (n < 0 || (size_t)n >= pathsz)
        return UV_ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = disk_write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        unlink(path);
    return rc;
}

int disk_combine(const char *dir, const void *data, size_t len, const disk_file *inputs,
                 size_t n, uint64_t *counter, char *name, int *committed, char *err,
                 size_t errlen) {
    char tmp[4096], jtmp[4096], jpath[4096], final[4096];
    char *journal = NULL;
    size_t jlen = 0, jcap = 0;
    int rc;
    *committed = 0;
    if ((rc = join(jpath, sizeof jpath, dir, DISK_JOURNAL)) != 0) {
        snprintf(err, errlen, "path too long");
        return rc;
    }
    /* 1: the merged profile, durable under a temporary name. */
    if ((rc = write_temp(dir, "combine", data, len, tmp, sizeof tmp)) != 0) {
        snprintf(err, errlen, "cannot write the merged profile: %s", uv_strerror(rc));
        return rc;
    }
    hook(1);
    /* Pick a final name that does not exist yet. */
    for (;;) {
        if ((rc = pick_name(dir, "merged_", counter, name, final, sizeof final)) != 0)
            goto fail_tmp;
        if (access(final, F_OK) != 0 && errno == ENOENT)
            break;
    }
    /* 2: the journal. */
    for (size_t i = 0; i <= n + 1; i++) {
        char line[DISK_NAME_MAX + 16];
        int ll;
        if (i == 0)
            ll = snprintf(line, sizeof line, "pgof-combine v1\nmerged %s\n", name);
        else if (i <= n)
            ll = snprintf(line, sizeof line, "input %s\n", inputs[i - 1].name);
        else
            ll = snprintf(line, sizeof line, "end\n");
        if (jlen + (size_t)ll + 1 > jcap) {
            jcap = (jcap + (size_t)ll + 1) * 2;
            journal = xrealloc(journal, jcap);
        }
        memcpy(journal + jlen, line, (size_t)ll);
        jlen += (size_t)ll;
    }
    if ((rc = write_temp(dir, "journal", journal, jlen, jtmp, sizeof jtmp)) != 0) {
        snprintf(err, errlen, "cannot write the combine journal: %s", uv_strerror(rc));
        goto fail_tmp;
    }
    hook(2);
    if (rename(jtmp, jpath) != 0) {
        rc = -errno;
        unlink(jtmp);
        snprintf(err, errlen, "cannot rename the combine journal: %s", strerror(errno));
        goto fail_tmp;
    }
    hook(3);
    if ((rc = disk_fsync_dir(dir)) != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", dir, uv_strerror(rc));
        goto fail_journal;
    }
    hook(4);
    /* 3: the commit point. */
    if ((rc = rename_noreplace(tmp, final)) != 0) {
        snprintf(err, errlen, "cannot rename the merged profile: %s", uv_strerror(rc));
        goto fail_journal;
    }
    *committed = 1;
    hook(5);
    if ((rc = disk_fsync_dir(dir)) != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", dir, uv_strerror(rc));
        goto out;
    }
    hook(6);
    /* 4: the inputs go. */
    for (size_t i = 0; i < n; i++) {
        char p[4096];
        if (join(p, sizeof p, dir, inputs[i].name) == 0 && unlink(p) != 0 && errno != ENOENT) {
            rc = -errno;
            snprintf(err, errlen, "cannot remove %s: %s", p, strerror(errno));
            goto out;
        }
        if (i == 0)
            hook(7);
    }
    hook(8);
    if ((rc = disk_fsync_dir(dir)) != 0) {
        snprintf(err, errlen, "cannot fsync %s: %s", dir, uv_strerror(rc));
        goto out;
    }
    hook(9);
    /* 5: done. */
    if (unlink(jpath) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot remove %s: %s", jpath, strerror(errno));
        goto out;
    }
    rc = disk_fsync_dir(dir);
    hook(10);
    goto out;

fail_journal:
    unlink(jpath);
    disk_fsync_dir(dir);
fail_tmp:
    unlink(tmp);
out:
    free(journal);
    return rc;
}

int disk_replay_journal(const char *dir, char *msg, size_t msglen) {
    char jpath[4096], merged[DISK_NAME_MAX] = "", mpath[4096];
    char buf[64 * 1024];
    int rc;
    if ((rc = join(jpath, sizeof jpath, dir, DISK_JOURNAL)) != 0)
        return rc;
    int fd = open(jpath, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(msg, msglen, "cannot open %s: %s", jpath, strerror(errno));
        return DISK_EUNSAFE;
    }
    /* The journal is small (one line per input) but may exceed one buffer
     * with very many inputs: read it whole into memory in pieces. */
    char *text = NULL;
    size_t tlen = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(msg, msglen, "cannot read %s: %s", jpath, strerror(errno));
            close(fd);
            free(text);
            return DISK_EUNSAFE;
        }
        if (n == 0)
            break;
        text = xrealloc(text, tlen + (size_t)n + 1);
        memcpy(text + tlen, buf, (size_t)n);
        tlen += (size_t)n;
    }
    close(fd);
    if (text == NULL)
        text = xstrdup("");
    text[tlen] = '\0';
    if (strncmp(text, "pgof-combine v1\nmerged ", 23) != 0 ||
        (tlen < 4 || strcmp(text + tlen - 4, "end\n") != 0)) {
        snprintf(msg, msglen, "%s is not a complete journal; left in place, no file touched",
                 jpath);
        free(text);
        return UV_EINVAL;
    }
    char *line = text + 16;
    char *nl = strchr(line, '\n');
    *nl = '\0';
    snprintf(merged, sizeof merged, "%s", line + 7);
    if (!disk_is_profile_name(merged) || join(mpath, sizeof mpath, dir, merged) != 0) {
        snprintf(msg, msglen, "%s names a bad merged file; left in place", jpath);
        free(text);
        return UV_EINVAL;
    }
    struct stat st;
    size_t removed = 0, inputs = 0, failed = 0;
    char first_failure[512] = "";
    if (stat(mpath, &st) == 0) {
        /* The combine committed: finish removing its inputs. */
        for (line = nl + 1; *line != '\0'; line = nl + 1) {
            nl = strchr(line, '\n');
            if (nl == NULL)
                break;
            *nl = '\0';
            if (strncmp(line, "input ", 6) != 0)
                continue;
            char p[4096];
            const char *in = line + 6;
            inputs++;
            if (!disk_is_profile_name(in) || strcmp(in, merged) == 0)
                continue;
            if (join(p, sizeof p, dir, in) != 0)
                continue;
            if (unlink(p) == 0) {
                removed++;
            } else if (errno != ENOENT) {
                if (failed++ == 0)
                    snprintf(first_failure, sizeof first_failure, "%s: %s", in,
                             strerror(errno));
            }
        }
        disk_fsync_dir(dir);
        if (failed > 0) {
            /* The input is also inside the merged file: counting both
             * would count it twice. Keep the journal and say so. */
            snprintf(msg, msglen,
                     "cannot finish the interrupted combine into %s: %zu of its inputs cannot be "
                     "removed (%s); %s kept, merges refused until it can be replayed",
                     merged, failed, first_failure, DISK_JOURNAL);
            free(text);
            return DISK_EUNSAFE;
        }
        snprintf(msg, msglen,
                 "finished an interrupted combine into %s: removed %zu of its %zu inputs", merged,
                 removed, inputs);
    } else {
        snprintf(msg, msglen, "dropped an interrupted combine that had not committed (%s absent)",
                 merged);
    }
    free(text);
    if (unlink(jpath) != 0) {
        rc = -errno;
        snprintf(msg, msglen, "cannot remove %s: %s", jpath, strerror(errno));
        return rc;
    }
    disk_fsync_dir(dir);
    return 1;
}
