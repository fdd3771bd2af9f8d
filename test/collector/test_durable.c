/*
 * test_durable.c: unit tests for src/collector/durable.c, the choice
 * between one syncfs per group commit and one fsync per file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/collector/durable.c"

#define TMPDIR_PREFIX "pgof-test-durable"
#include "tmpdir.h"

static void test_fsync_setting_never_batches(void **state) {
    (void)state;
    char why[256];
    durable *d = durable_new(dir, 0, why, sizeof why);
    assert_string_equal(why, "");
    assert_int_equal(durable_use_batch(d), 0);
    /* Nothing to resume to, whatever the time. */
    assert_int_equal(durable_resume(d, 1e9), 0);
    assert_int_equal(durable_use_batch(d), 0);
    durable_free(d);
}

/* This machine's kernel (Debian 12 or newer) reports syncfs errors. */
static void test_batches_by_default(void **state) {
    (void)state;
    char why[256], note[256];
    double secs = -1;
    durable *d = durable_new(dir, 1, why, sizeof why);
    assert_string_equal(why, "");
    assert_int_equal(durable_use_batch(d), 1);
    assert_int_equal(durable_sync_batch(d, 10.0, &secs, note, sizeof note), 0);
    assert_true(secs >= 0 && secs < 5);
    assert_string_equal(note, "");
    assert_int_equal(durable_use_batch(d), 1);
    durable_free(d);
}

static void test_unopenable_directory_means_fsync(void **state) {
    (void)state;
    char why[256], missing[128];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    durable *d = durable_new(missing, 1, why, sizeof why);
    assert_int_equal(durable_use_batch(d), 0);
    assert_non_null(strstr(why, "cannot open"));
    assert_non_null(strstr(why, "fsync'd on its own"));
    durable_free(d);
}

/* Every syncfs counts as slow with a 0 ms threshold: the first one starts
 * the back-off, which ends backoff_ms (plus the syncfs's own time) later. */
static void test_slow_syncfs_backs_off_then_resumes(void **state) {
    (void)state;
    char why[256], note[256];
    double secs;
    durable *d = durable_new(dir, 1, why, sizeof why);
    durable_set_timing(d, 0, 2000);
    assert_int_equal(durable_sync_batch(d, 100.0, &secs, note, sizeof note), 0);
    assert_non_null(strstr(note, "syncfs took"));
    assert_non_null(strstr(note, "for the next 2 s"));
    assert_int_equal(durable_use_batch(d), 0);
    /* A second slow call during the back-off does not extend it. */
    assert_int_equal(durable_sync_batch(d, 101.0, &secs, note, sizeof note), 0);
    assert_string_equal(note, "");
    assert_int_equal(durable_resume(d, 101.5), 0);
    assert_int_equal(durable_use_batch(d), 0);
    assert_int_equal(durable_resume(d, 102.0 + secs + 0.5), 1);
    assert_int_equal(durable_use_batch(d), 1);
    assert_int_equal(durable_resume(d, 200.0), 0); /* already back */
    durable_free(d);
}

static void test_write_out(void **state) {
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "data", 4), 4);
    durable_start_write_out(fd);
    assert_int_equal(durable_write_out(fd), 0);
    close(fd);
    assert_int_equal(durable_write_out(fd), UV_EBADF);
    durable_start_write_out(fd); /* ignores the error */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fsync_setting_never_batches, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_batches_by_default, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_unopenable_directory_means_fsync, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(test_slow_syncfs_backs_off_then_resumes, make_dir,
                                        remove_dir),
        cmocka_unit_test_setup_teardown(test_write_out, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
