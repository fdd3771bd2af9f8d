/*
 * outfile.c: writing an output file so that readers see the old file or the
 * whole new one, never a part.
 *
 * DESIGN
 * A build that runs `pgof fetch && go build -pgo=default.pgo` must never
 * build with half a profile, and a failed fetch must leave yesterday's good
 * profile in place. So the bytes go to a temporary file in the target's own
 * directory (rename(2) is atomic only within one file system), named
 * ".<target>.XXXXXX" so that it is hidden and easy to attribute. Commit
 * fsyncs the data, renames over the target and fsyncs the directory, so a
 * crash right after a successful exit cannot lose the rename either.
 *
 * With the target "-" the temporary file lives in $TMPDIR and commit copies
 * it to stdout: the caller still validates the whole body before anything
 * reaches the pipe.
 *
 * mkstemp creates the file with mode 0600; commit gives it the mode that
 * open(2) with 0666 would have given under the current umask, as for any
 * other file a tool writes.
 *
 * cli_outfile_abort is the one cleanup and may run any number of times.
 *
 * Interrupts: while a temporary file exists, SIGINT, SIGTERM and SIGHUP
 * unlink it (unlink is async-signal-safe) and then die of the signal as
 * usual, so a build cancelled mid-download leaves no ".default.pgo.*"
 * behind. pgof has one outfile at a time; the handler reads its path from a
 * static that is set before the handler is armed and cleared before the path
 * is freed.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *volatile pending_tmp;

static void on_signal(int sig)
{
    const char *p = pending_tmp;
    if (p)
        unlink(p);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Points the signal handler at path (or at nothing, with NULL). */
static void track(const char *path)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;

    if (path) {
        pending_tmp = path;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            sigaction(sigs[i], &sa, NULL);
    } else {
        pending_tmp = NULL;
    }
}

int cli_outfile_open(cli_outfile *o, const char *target, char *err)
{
    char *copy1 = NULL, *copy2 = NULL;
    const char *dir, *base;
    size_t n;
    int rc = CLI_ENOMEM;

    o->fd = -1;
    o->tmp_path = NULL;
    o->to_stdout = strcmp(target, "-") == 0;
    o->path = strdup(target);
    if (!o->path)
        goto fail;
    if (o->to_stdout) {
        const char *tmp = getenv("TMPDIR");
        dir = tmp && *tmp ? tmp : "/tmp";
        base = "pgof-stdout";
    } else {
        copy1 = strdup(target);
        copy2 = strdup(target);
        if (!copy1 || !copy2)
            goto fail;
        dir = dirname(copy1);
        base = basename(copy2);
    }
    n = strlen(dir) + strlen(base) + 16;
    o->tmp_path = malloc(n);
    if (!o->tmp_path)
        goto fail;
    snprintf(o->tmp_path, n, "%s/.%s.XXXXXX", dir, base);
    o->fd = mkostemp(o->tmp_path, O_CLOEXEC);
    if (o->fd < 0) {
        rc = CLI_EIO;
        snprintf(err, CLI_ERR_MAX, "cannot create a temporary file in %s: %s", dir,
                 strerror(errno));
        free(o->tmp_path);
        o->tmp_path = NULL;
        goto fail_reported;
    }
    track(o->tmp_path);
    free(copy1);
    free(copy2);
    return 0;

fail:
    snprintf(err, CLI_ERR_MAX, "out of memory");
fail_reported:
    free(copy1);
    free(copy2);
    free(o->path);
    o->path = NULL;
    return rc;
}

int cli_outfile_reset(cli_outfile *o, char *err)
{
    if (ftruncate(o->fd, 0) != 0 || lseek(o->fd, 0, SEEK_SET) != 0) {
        snprintf(err, CLI_ERR_MAX, "cannot empty %s: %s", o->tmp_path, strerror(errno));
        return CLI_EIO;
    }
    return 0;
}

int cli_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int copy_to_stdout(cli_outfile *o, char *err)
{
    char buf[65536];
    ssize_t n;

    if (lseek(o->fd, 0, SEEK_SET) != 0)
        goto fail;
    for (;;) {
        n = read(o->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        if (cli_write_all(STDOUT_FILENO, buf, (size_t)n) != 0) {
            snprintf(err, CLI_ERR_MAX, "cannot write to standard output: %s", strerror(errno));
            return CLI_EIO;
        }
    }
    return 0;
fail:
    snprintf(err, CLI_ERR_MAX, "cannot read back %s: %s", o->tmp_path, strerror(errno));
    return CLI_EIO;
}

int cli_outfile_commit(cli_outfile *o, char *err)
{
    mode_t mask;
    char *copy;
    int dfd;

    if (o->to_stdout) {
        int rc = copy_to_stdout(o, err);
        cli_outfile_abort(o);
        return rc;
    }
    mask = umask(0);
    umask(mask);
    if (fchmod(o->fd, 0666 & ~mask) != 0 || fsync(o->fd) != 0) {
        snprintf(err, CLI_ERR_MAX, "cannot write %s: %s", o->tmp_path, strerror(errno));
        return CLI_EIO;
    }
    if (close(o->fd) != 0) {
        o->fd = -1;
        snprintf(err, CLI_ERR_MAX, "cannot write %s: %s", o->tmp_path, strerror(errno));
        return CLI_EIO;
    }
    o->fd = -1;
    if (rename(o->tmp_path, o->path) != 0) {
        snprintf(err, CLI_ERR_MAX, "cannot rename %s to %s: %s", o->tmp_path, o->path,
                 strerror(errno));
        return CLI_EIO;
    }
    track(NULL);
    free(o->tmp_path);
    o->tmp_path = NULL;

    /* Make the rename itself durable. A failure here is not worth failing
     * the command over: the file is complete and in place. */
    copy = strdup(o->path);
    if (copy) {
        dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(copy);
    }
    return 0;
}

void cli_outfile_abort(cli_outfile *o)
{
    if (o->fd >= 0) {
        close(o->fd);
        o->fd = -1;
    }
    if (o->tmp_path) {
        unlink(o->tmp_path);
        track(NULL);
        free(o->tmp_path);
        o->tmp_path = NULL;
    }
    free(o->path);
    o->path = NULL;
}
