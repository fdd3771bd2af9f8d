/*
 * pgof-bench.c: the overhead benchmark's host (make bench-embedded,
 * test/bench/embedded_overhead.sh). A fixed amount of CPU work on two
 * threads; with "on", libpgof records one window covering the whole run at
 * 100 Hz (a custom endpoint discards the profile), so the difference in
 * run time is the profiler's cost.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../burn.h"
#include "embedded/pgof.h"

static int discard(void *ctx, const uint8_t *d, size_t n, char *e, size_t el)
{
    (void)ctx, (void)d, (void)n, (void)e, (void)el;
    return 0;
}

static void *work(void *arg)
{
    (void)arg;
    burn_hot(1500000000ull);
    return NULL;
}

int main(int argc, char **argv)
{
    pgof_endpoint *ep;
    pgof_error err;
    pthread_t t[2];
    int i;

    if (argc > 1 && strcmp(argv[1], "on") == 0) {
        if (pgof_endpoint_new_custom(discard, NULL, &ep, &err) ||
            pgof_enable(0, 3600000, ep, &err)) {
            fprintf(stderr, "pgof-bench: %s\n", err.msg);
            return 1;
        }
        pgof_endpoint_free(ep);
        while (!pgof_recording())
            ;
    }
    for (i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return 0;
}
