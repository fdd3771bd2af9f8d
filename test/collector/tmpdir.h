/*
 * tmpdir.h: a fresh directory under /tmp per test (cmocka setup and
 * teardown), for the collector's unit tests that touch files. Define
 * TMPDIR_PREFIX before including it.
 */
#ifndef TEST_COLLECTOR_TMPDIR_H
#define TEST_COLLECTOR_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

static char dir[64];

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/" TMPDIR_PREFIX "-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int remove_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
