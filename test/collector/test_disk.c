/*
 * test_disk.c: unit tests for src/collector/disk.c, the profile directory's
 * on-disk protocol. The combine is interrupted after each of its steps in a
 * forked child (the hook calls _exit), and the parent checks that replaying
 * the journal leaves either every input or only the merged file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/collector/disk.c"

#include <sys/wait.h>

static char dir[64];

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pgof-test-disk-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int remove_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *name, const char *text) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int exists(const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static size_t count_profiles(disk_file **files) {
    size_t n = 0;
    char err[256];
    assert_int_equal(disk_list_profiles(dir, files, &n, err, sizeof err), 0);
    return n;
}

static void test_names(void **state) {
    (void)state;
    assert_true(disk_is_profile_name("1700000000000_0.pgo"));
    assert_true(disk_is_profile_name("merged_1700000000001_1.pgo"));
    assert_false(disk_is_profile_name(".pgof-tmp-1-2"));
    assert_false(disk_is_profile_name(".hidden.pgo"));
    assert_false(disk_is_profile_name("x.pgo.tmp"));
    assert_false(disk_is_profile_name(".pgo"));
}

static void test_list_sweep_commit_quarantine(void **state) {
    (void)state;
    char err[256], name[DISK_NAME_MAX], tmp[256];
    uint64_t counter = 0;
    disk_file *files = NULL;
    put("b.pgo", "b");
    put("a.pgo", "a");
    put("notes.txt", "n");
    put(".pgof-tmp-9-9", "t");
    assert_int_equal(disk_sweep_temps(dir, err, sizeof err), 1);
    assert_int_equal(count_profiles(&files), 2);
    assert_string_equal(files[0].name, "a.pgo");
    free(files);
    snprintf(tmp, sizeof tmp, "%s/.pgof-tmp-1-1", dir);
    put(".pgof-tmp-1-1", "new");
    assert_int_equal(disk_commit(dir, tmp, "", &counter, name, err, sizeof err), 0);
    assert_int_equal(counter, 1);
    assert_true(exists(name));
    assert_non_null(strstr(name, "_0.pgo"));
    assert_int_equal(disk_quarantine(dir, "a.pgo", err, sizeof err), 0);
    put("a.pgo", "again");
    assert_int_equal(disk_quarantine(dir, "a.pgo", err, sizeof err), 0);
    assert_true(exists("quarantine/a.pgo"));
    assert_true(exists("quarantine/a.pgo.1"));
    assert_int_equal(count_profiles(&files), 2);
    free(files);
}

static void test_gzip(void **state) {
    (void)state;
    char err[256];
    char in[128], out[128];
    snprintf(in, sizeof in, "%s/in", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    put("in", "hello hello hello hello");
    int ifd = open(in, O_RDONLY), ofd = open(out, O_RDWR | O_CREAT, 0600);
    assert_int_equal(disk_gzip_fd(ifd, ofd, err, sizeof err), 0);
    close(ifd);
    close(ofd);
    gzFile g = gzopen(out, "rb");
    char buf[64] = "";
    assert_int_equal(gzread(g, buf, sizeof buf - 1), 23);
    gzclose(g);
    assert_string_equal(buf, "hello hello hello hello");
}

static void exit_at(int step);
static int exit_step;
static void exit_at(int step) {
    if (step == exit_step)
        _exit(0);
}

static void test_combine_interrupted_at_each_step(void **state) {
    (void)state;
    for (int step = 1; step <= 10; step++) {
        remove_dir(NULL);
        make_dir(NULL);
        put("1_0.pgo", "one");
        put("2_1.pgo", "two");
        put("3_2.pgo", "three");
        disk_file *inputs = NULL;
        size_t n = count_profiles(&inputs);
        assert_int_equal(n, 3);
        pid_t pid = fork();
        if (pid == 0) {
            char err[256], name[DISK_NAME_MAX];
            uint64_t counter = 7;
            int committed;
            exit_step = step;
            disk__combine_hook = exit_at;
            disk_combine(dir, "merged", 6, inputs, n, &counter, name, &committed, err,
                         sizeof err);
            _exit(3);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(WEXITSTATUS(status), 0);
        char msg[512], err[256];
        int rc = disk_replay_journal(dir, msg, sizeof msg);
        assert_true(rc == 0 || rc == 1);
        assert_true(disk_sweep_temps(dir, err, sizeof err) >= 0);
        disk_file *after = NULL;
        size_t m = count_profiles(&after);
        assert_false(exists(DISK_JOURNAL));
        if (step < 5) {
            /* Before the commit point: the inputs, untouched. */
            assert_int_equal(m, 3);
            assert_string_equal(after[0].name, "1_0.pgo");
        } else {
            /* After it: only the merged file. */
            assert_int_equal(m, 1);
            assert_non_null(strstr(after[0].name, "merged_"));
        }
        free(after);
        free(inputs);
    }
}

static void test_combine_and_bad_journal(void **state) {
    (void)state;
    char err[256], name[DISK_NAME_MAX], msg[256];
    uint64_t counter = 0;
    int committed;
    put("1_0.pgo", "one");
    disk_file *inputs = NULL;
    size_t n = count_profiles(&inputs);
    assert_int_equal(disk_combine(dir, "m", 1, inputs, n, &counter, name, &committed, err,
                                  sizeof err), 0);
    assert_int_equal(committed, 1);
    free(inputs);
    assert_false(exists("1_0.pgo"));
    assert_true(exists(name));
    /* A journal that is not complete is left alone and touches nothing. */
    put(DISK_JOURNAL, "pgof-combine v1\nmerged x.pgo\ninput ");
    assert_int_equal(disk_replay_journal(dir, msg, sizeof msg), UV_EINVAL);
    assert_true(exists(DISK_JOURNAL));
    assert_true(exists(name));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_list_sweep_commit_quarantine, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_gzip, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_combine_interrupted_at_each_step, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(test_combine_and_bad_journal, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
