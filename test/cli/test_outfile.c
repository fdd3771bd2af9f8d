/*
 * test_outfile.c: src/cli/outfile.c: the target changes only on commit,
 * abort leaves no temporary file, reset empties, "-" goes to stdout, and the
 * committed file gets the umask's mode.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/outfile.c"

static char dir[] = "/tmp/pgof-test-outfile.XXXXXX";

static char *path_in(const char *name)
{
    static char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

static char *slurp(const char *p)
{
    static char buf[256];
    FILE *f = fopen(p, "r");
    size_t n;
    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int entries(void)
{
    char cmd[300];
    FILE *f;
    int n = -1;
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    f = popen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    return n;
}

static void test_commit_replaces_abort_keeps(void **state)
{
    char target[256], err[CLI_ERR_MAX];
    cli_outfile o;
    struct stat st;
    (void)state;

    snprintf(target, sizeof(target), "%s", path_in("default.pgo"));
    FILE *f = fopen(target, "w");
    fputs("old", f);
    fclose(f);

    /* Abort: the old file stays, no temporary file is left. */
    assert_int_equal(cli_outfile_open(&o, target, err), 0);
    assert_int_equal(strncmp(o.tmp_path, path_in(".default.pgo."), strlen(path_in(".default.pgo."))), 0);
    assert_int_equal(cli_write_all(o.fd, "partial", 7), 0);
    assert_string_equal(slurp(target), "old");
    cli_outfile_abort(&o);
    cli_outfile_abort(&o);
    assert_string_equal(slurp(target), "old");
    assert_int_equal(entries(), 1);

    /* Reset, then commit: only the bytes after the reset land. */
    umask(027);
    assert_int_equal(cli_outfile_open(&o, target, err), 0);
    assert_int_equal(cli_write_all(o.fd, "first try", 9), 0);
    assert_int_equal(cli_outfile_reset(&o, err), 0);
    assert_int_equal(cli_write_all(o.fd, "new", 3), 0);
    assert_int_equal(cli_outfile_commit(&o, err), 0);
    cli_outfile_abort(&o);
    assert_string_equal(slurp(target), "new");
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(entries(), 1);
    umask(022);
}

static void test_open_fails_cleanly(void **state)
{
    char err[CLI_ERR_MAX] = "";
    cli_outfile o;
    (void)state;
    assert_int_equal(cli_outfile_open(&o, "/nonexistent-dir/x.pgo", err), CLI_EIO);
    assert_non_null(strstr(err, "cannot create a temporary file in /nonexistent-dir"));
    assert_null(o.path);
    assert_null(o.tmp_path);
    assert_int_equal(o.fd, -1);
    cli_outfile_abort(&o);
}

static void test_stdout(void **state)
{
    char err[CLI_ERR_MAX], cap[64];
    int pipefd[2], saved;
    cli_outfile o;
    ssize_t n;
    (void)state;

    setenv("TMPDIR", dir, 1);
    assert_int_equal(pipe(pipefd), 0);
    saved = dup(STDOUT_FILENO);
    dup2(pipefd[1], STDOUT_FILENO);
    assert_int_equal(cli_outfile_open(&o, "-", err), 0);
    assert_true(o.to_stdout);
    assert_int_equal(cli_write_all(o.fd, "to stdout", 9), 0);
    assert_int_equal(cli_outfile_commit(&o, err), 0);
    cli_outfile_abort(&o);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(pipefd[1]);
    n = read(pipefd[0], cap, sizeof(cap) - 1);
    close(pipefd[0]);
    assert_int_equal(n, 9);
    cap[n] = '\0';
    assert_string_equal(cap, "to stdout");
    assert_int_equal(entries(), 1); /* the temp file in TMPDIR is gone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_replaces_abort_keeps),
        cmocka_unit_test(test_open_fails_cleanly),
        cmocka_unit_test(test_stdout),
    };
    char cmd[300];
    int rc;
    alarm(30);
    if (!mkdtemp(dir))
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? rc : 1;
}
