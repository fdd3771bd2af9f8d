/*
 * pgof-e2e.c: a host process for the end-to-end test
 * (test/embedded/test_embedded_e2e.py), linked against build/libpgof.so.
 *
 * Usage: pgof-e2e SUBMIT_URL KEY
 * Enables libpgof (interval 50 ms, window 1 s) while two threads burn
 * burn_hot and burn_cold, waits for one window to open and close, disables
 * and waits for the submission. Exits 0 when no error was reported, 1 when
 * the error callback ran (the message goes to stderr), 2 on misuse.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../burn.h"
#include "embedded/pgof.h"

static _Atomic int errors;
static _Atomic int stop;

static void on_error(void *ctx, int code, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "pgof-e2e: libpgof error %d (%s): %s\n", code, pgof_strerror(code), msg);
    atomic_fetch_add(&errors, 1);
}

static void *burner(void *arg)
{
    uint32_t seed = (uint32_t)(uintptr_t)arg;
    while (!atomic_load(&stop))
        burn_mix(50000000LL, 20000, seed++);
    return NULL;
}

int main(int argc, char **argv)
{
    pgof_endpoint *ep;
    pgof_error err = {0, ""};
    pthread_t t[2];
    int i;

    if (argc != 3) {
        fprintf(stderr, "usage: pgof-e2e SUBMIT_URL KEY\n");
        return 2;
    }
    pgof_set_error_callback(on_error, NULL);
    if (pgof_endpoint_new(argv[1], argv[2], &ep, &err)) {
        fprintf(stderr, "pgof-e2e: %s\n", err.msg);
        return 2;
    }
    for (i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, burner, (void *)(uintptr_t)(i + 1));
    if (pgof_enable(50, 1000, ep, &err)) {
        fprintf(stderr, "pgof-e2e: %s\n", err.msg);
        return 1;
    }
    pgof_endpoint_free(ep);
    while (!pgof_recording())
        usleep(5000);
    while (pgof_recording())
        usleep(5000);
    pgof_disable();
    if (pgof_wait_idle(30000)) {
        fprintf(stderr, "pgof-e2e: the submission did not finish in 30 s\n");
        return 1;
    }
    atomic_store(&stop, 1);
    for (i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("pgof-e2e: done, %d errors\n", atomic_load(&errors));
    return atomic_load(&errors) ? 1 : 0;
}
