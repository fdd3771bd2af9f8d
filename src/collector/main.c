/*
 * main.c: pgof-collector's entry point.
 *
 * Reads the configuration from the environment, prepares the profile
 * directory (and sweeps leftover temporary files from it), loads both key
 * files, starts the server and runs the loop
 * until a graceful shutdown has finished. Any problem before the loop runs
 * is reported as one line naming the variable and the cause, with exit
 * status 1. Blocking here is fine: nothing is served yet.
 */
#include "collector/config.h"
#include "collector/disk.h"
#include "collector/keys.h"
#include "collector/log.h"
#include "collector/server.h"
#include "collector/store.h"
#include "collector/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

/* mkdir -p, then checks that we can create files in it. */
static int prepare_directory(const char *dir, char *err, size_t errlen) {
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) {
        snprintf(err, errlen, "PGOF_DIRECTORY=\"%s\": bad path", dir);
        return -1;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "PGOF_DIRECTORY=\"%s\": cannot create %s: %s", dir, path,
                     strerror(errno));
            return -1;
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "PGOF_DIRECTORY=\"%s\": not a directory", dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/.pgof-tmp-probe-%ld", dir, (long)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "PGOF_DIRECTORY=\"%s\": cannot create files in it: %s", dir,
                 strerror(errno));
        return -1;
    }
    close(fd);
    unlink(path);
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(void) {
    config cfg;
    char err[CONFIG_ERR_MAX];
    keyset *submit = NULL, *merge = NULL;
    uv_loop_t loop;
    server srv;
    int status = 1;

    signal(SIGPIPE, SIG_IGN);
    if (config_load(&cfg, err, sizeof err) != 0) {
        LOG(LOG_ERROR, "configuration: %s", err);
        return 1;
    }
    log_level = cfg.log_level;
    /* Before the pool starts: libuv sizes it from UV_THREADPOOL_SIZE when
     * the first work is queued, and glibc fixes its arena limit when a
     * second thread first allocates. */
    int arenas = util_limit_arenas(config_cpus());
    util_pool_nice_delta = cfg.worker_nice;
    if (cfg.worker_threads_set) {
        char n[16];
        snprintf(n, sizeof n, "%u", cfg.worker_threads);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }
    if (prepare_directory(cfg.directory, err, sizeof err) != 0) {
        LOG(LOG_ERROR, "configuration: %s", err);
        return 1;
    }
    if (keys_load_file(cfg.submit_keys_file, &submit, err, sizeof err) != 0) {
        LOG(LOG_ERROR, "configuration: PGOF_SUBMIT_AUTH_KEYS_FILE: %s", err);
        return 1;
    }
    if (keys_load_file(cfg.merge_keys_file, &merge, err, sizeof err) != 0) {
        LOG(LOG_ERROR, "configuration: PGOF_MERGE_AUTH_KEYS_FILE: %s", err);
        keys_free(submit);
        return 1;
    }
    /* Leftover temporary files (a previous run was killed) go now, before
     * anything is served: later, uploads of this process are streaming into
     * files with the same prefix. */
    int swept = disk_sweep_temps(cfg.directory, err, sizeof err);
    if (swept < 0)
        LOG(LOG_WARN, "store: %s", err);
    else if (swept > 0)
        LOG(LOG_INFO, "store: removed %d leftover temporary file(s)", swept);
    /* A test seam, documented in docs/configuration.md: die at one step of
     * a combine, to prove the journal. */
    const char *crash = getenv("PGOF_TEST_CRASH_AT_STEP");
    if (crash != NULL && *crash != '\0')
        store_set_crash_step(atoi(crash));

    if (uv_loop_init(&loop) != 0) {
        LOG(LOG_ERROR, "cannot create the event loop");
        keys_free(submit);
        keys_free(merge);
        return 1;
    }
    server_init(&srv, &loop, &cfg, submit, merge, err, sizeof err);
    if (server_start(&srv, err, sizeof err) != 0) {
        LOG(LOG_ERROR, "configuration: %s", err);
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    } else {
        char desc[1024], arena_desc[16];
        config_describe(&cfg, desc, sizeof desc);
        snprintf(arena_desc, sizeof arena_desc, "%d", arenas);
        LOG(LOG_INFO,
            "pgof-collector started (pid %ld, %zu submit key(s), %zu merge key(s)): %s "
            "malloc_arenas=%s",
            (long)getpid(), keys_count(srv.submit_keys), keys_count(srv.merge_keys), desc,
            arenas > 0 ? arena_desc : arenas == 0 ? "environment" : "allocator-default");
        uv_run(&loop, UV_RUN_DEFAULT);
        status = 0;
    }
    server_free(&srv);
    if (uv_loop_close(&loop) != 0)
        LOG(LOG_WARN, "event loop closed with handles still open");
    return status;
}
