/*
 * test_spares.c: src/collector/spares.c, the stack of merged profiles kept
 * for the next decodes: its bounds in count and memory, and its use from
 * several threads at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "collector/spares.h"

/* A decoded copy of the fixture (sort.pb.gz holds about 0.1 MiB). */
static pprof_profile *decoded(void) {
    const char *d = getenv("PGOF_FIXTURES");
    char path[512];
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    snprintf(path, sizeof path, "%s/profiles/sort.pb.gz", d && *d ? d : "test/fixtures");
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    if (pprof_decode_fd(fd, NULL, &p, &err) != 0)
        fail_msg("%s", err.msg);
    close(fd);
    return p;
}

static void test_bounds(void **state) {
    (void)state;
    pprof_profile *a = decoded(), *b = decoded(), *c = decoded();
    size_t mem = pprof_profile_memory(a);
    assert_true(mem > 0);
    spares *s = spares_new(2, mem);
    assert_null(spares_take(s));
    spares_give(s, NULL);
    assert_null(spares_take(s));
    spares_give(s, a);
    spares_give(s, b);
    spares_give(s, c); /* full: freed (ASan's leak check would see it kept) */
    assert_ptr_equal(spares_take(s), b);
    assert_ptr_equal(spares_take(s), a);
    assert_null(spares_take(s));
    spares_give(s, a);
    spares_give(s, b);
    spares_free(s); /* frees both */

    /* A profile holding more than max_bytes is freed, not kept. */
    s = spares_new(2, mem - 1);
    spares_give(s, decoded());
    assert_null(spares_take(s));
    spares_free(s);
}

#define ROUNDS 2000

static void *churn(void *arg) {
    spares *s = arg;
    for (int i = 0; i < ROUNDS; i++) {
        pprof_profile *p = spares_take(s);
        if (p == NULL)
            p = decoded();
        spares_give(s, p);
    }
    return NULL;
}

/* Four threads taking and giving: every profile ends kept or freed, once
 * (make test runs this under ASan too, which would see a double free or a
 * leak). */
static void test_threads(void **state) {
    (void)state;
    pthread_t t[4];
    spares *s = spares_new(3, 1u << 30);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, s), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    int kept = 0;
    pprof_profile *p;
    while ((p = spares_take(s)) != NULL) {
        kept++;
        pprof_profile_free(p);
    }
    assert_true(kept >= 1 && kept <= 3);
    spares_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
