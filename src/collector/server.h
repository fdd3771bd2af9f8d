/*
 * server.h: the collector process: listener, connections, keys, shutdown.
 *
 * DESIGN
 * One server per process, owned by main.c and driven by one libuv loop on
 * the main thread. It owns the listening socket, the list of connections,
 * the two keysets (swapped whole on SIGHUP), the profile store and the
 * signal handles. Everything in it is touched only on the loop thread.
 *
 * Shutdown (SIGTERM/SIGINT): the listener closes, idle connections close,
 * busy ones finish their current request and close, and after
 * shutdown_grace_ms the rest are cut. When no connection and no store job is
 * left, temporary files are swept and every handle closes, so uv_run()
 * returns and main() frees what is left.
 */
#ifndef COLLECTOR_SERVER_H
#define COLLECTOR_SERVER_H

#include "collector/config.h"
#include "collector/keys.h"
#include "pprof/pprof.h"

#include <uv.h>

struct conn;
struct store;

typedef struct server {
    /* read-only after server_init */
    uv_loop_t *loop;
    const config *cfg;
    pprof_limits limits;

    /* loop thread */
    keyset *submit_keys;
    keyset *merge_keys;
    struct store *store;
    struct conn *conns; /* doubly linked, newest first */
    uint64_t nconns;
    uint64_t next_conn_id;
    int shutting_down;

    /* private */
    uv_tcp_t _listener;
    uv_signal_t _sigterm, _sigint, _sighup;
    uv_timer_t _grace;
    uv_idle_t _finish_check;
    int _reloading;
    int _listening;
    int _closed;
} server;

/*
 * Sets up the server: takes ownership of both keysets, opens the store on
 * cfg->directory and binds the listener. On failure writes one line into err
 * and returns a negative uv code; the server must then still be passed to
 * server_free after uv_run() drains the loop.
 */
int server_init(server *s, uv_loop_t *loop, const config *cfg, keyset *submit_keys,
                keyset *merge_keys, char *err, size_t errlen);

/* Starts listening and the store's start-up load. */
int server_start(server *s, char *err, size_t errlen);

/* Begins the graceful shutdown described above. Safe to call twice. */
void server_shutdown(server *s);

/* Frees what server_init allocated; call after uv_run() returned. */
void server_free(server *s);

/* conn.c tells the server when a connection is gone (loop thread). */
void server__conn_gone(server *s, struct conn *c);

/* Checks whether a shutdown can finish now (no connections, store idle). */
void server__maybe_finish(server *s);

#endif /* COLLECTOR_SERVER_H */
