/*
 * server.c: listener, signals, key reload and graceful shutdown (see
 * server.h). Loop thread only, except reload_work on the threadpool.
 */
#include "collector/server.h"

#include "collector/conn.h"
#include "collector/disk.h"
#include "collector/log.h"
#include "collector/metrics.h"
#include "collector/store.h"
#include "collector/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_connection(uv_stream_t *listener, int status) {
    server *s = listener->data;
    if (status < 0) {
        LOG(LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    if (s->shutting_down)
        return;
    conn_accept(s, listener);
}

void server__conn_gone(server *s, conn *c) {
    if (c->_prev)
        c->_prev->_next = c->_next;
    else
        s->conns = c->_next;
    if (c->_next)
        c->_next->_prev = c->_prev;
    c->_next = c->_prev = NULL;
    s->nconns--;
    g_metrics.connections--;
    server__maybe_finish(s);
}

/* ---- key reload (SIGHUP) ---------------------------------------------- */

typedef struct reload_job {
    uv_work_t work;
    server *s;
    const char *paths[2];
    keyset *sets[2];
    int rc[2];
    char err[2][512];
} reload_job;

/* Runs on the threadpool: reads both key files. */
static void reload_work(uv_work_t *w) {
    reload_job *j = container_of(w, reload_job, work);
    for (int i = 0; i < 2; i++)
        j->rc[i] = keys_load_file(j->paths[i], &j->sets[i], j->err[i], sizeof j->err[i]);
}

static void reload_after(uv_work_t *w, int status) {
    reload_job *j = container_of(w, reload_job, work);
    server *s = j->s;
    static const char *const vars[2] = {"PGOF_SUBMIT_AUTH_KEYS_FILE", "PGOF_MERGE_AUTH_KEYS_FILE"};
    keyset **dst[2] = {&s->submit_keys, &s->merge_keys};
    s->_reloading = 0;
    for (int i = 0; i < 2; i++) {
        if (status == 0 && j->rc[i] == 0) {
            keys_free(*dst[i]);
            *dst[i] = j->sets[i];
            g_metrics.key_reloads++;
            LOG(LOG_INFO, "keys: reloaded %s: %zu key(s)", vars[i], keys_count(*dst[i]));
        } else {
            keys_free(j->sets[i]);
            g_metrics.key_reload_errors++;
            LOG(LOG_ERROR, "keys: reload of %s failed, keeping the %zu old key(s): %s", vars[i],
                keys_count(*dst[i]), status == 0 ? j->err[i] : uv_strerror(status));
        }
    }
    free(j);
    server__maybe_finish(s);
}

static void on_sighup(uv_signal_t *h, int signum) {
    server *s = h->data;
    (void)signum;
    if (s->_reloading || s->shutting_down)
        return;
    reload_job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->paths[0] = s->cfg->submit_keys_file;
    j->paths[1] = s->cfg->merge_keys_file;
    LOG(LOG_INFO, "keys: SIGHUP, reloading key files");
    if (uv_queue_work(s->loop, &j->work, reload_work, reload_after) != 0) {
        free(j);
        return;
    }
    s->_reloading = 1;
}

/* ---- shutdown ---------------------------------------------------------- */

static void on_sigterm(uv_signal_t *h, int signum) {
    server *s = h->data;
    LOG(LOG_INFO, "received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    server_shutdown(s);
}

static void on_grace(uv_timer_t *t) {
    server *s = t->data;
    LOG(LOG_WARN, "shutdown: grace time over, closing %llu connection(s)",
        (unsigned long long)s->nconns);
    for (conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->_next;
        conn_close(c);
    }
    server__maybe_finish(s);
}

static void on_store_idle(void *arg) {
    server__maybe_finish(arg);
}

void server_shutdown(server *s) {
    if (s->shutting_down)
        return;
    s->shutting_down = 1;
    store_stop(s->store);
    LOG(LOG_INFO, "shutdown: no longer accepting; %llu connection(s) open, grace %.3gs",
        (unsigned long long)s->nconns, s->cfg->shutdown_grace_ms / 1000.0);
    if (s->_listening) {
        uv_close((uv_handle_t *)&s->_listener, NULL);
        s->_listening = 0;
    }
    for (conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->_next;
        conn_close_if_idle(c);
    }
    uv_timer_start(&s->_grace, on_grace, s->cfg->shutdown_grace_ms, 0);
    server__maybe_finish(s);
}

void server__maybe_finish(server *s) {
    char err[256];
    if (!s->shutting_down || s->_closed || s->nconns > 0 || s->_reloading ||
        (s->store != NULL && store_busy(s->store)))
        return;
    s->_closed = 1;
    uv_close((uv_handle_t *)&s->_grace, NULL);
    uv_close((uv_handle_t *)&s->_sigterm, NULL);
    uv_close((uv_handle_t *)&s->_sigint, NULL);
    uv_close((uv_handle_t *)&s->_sighup, NULL);
    /* The process is about to exit: a blocking sweep is fine here. Uploads
     * cut short queued their own removal, which uv_run still completes. */
    int n = disk_sweep_temps(s->cfg->directory, err, sizeof err);
    if (n < 0)
        LOG(LOG_WARN, "shutdown: %s", err);
    LOG(LOG_INFO, "shutdown: done (%d temporary file(s) removed)", n < 0 ? 0 : n);
}

/* ---- set-up -------------------------------------------------------------- */

int server_init(server *s, uv_loop_t *loop, const config *cfg, keyset *submit_keys,
                keyset *merge_keys, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = cfg;
    s->limits.max_inflated = cfg->max_profile_bytes;
    s->limits.max_memory = cfg->max_profile_memory;
    s->submit_keys = submit_keys;
    s->merge_keys = merge_keys;
    s->store = store_new(loop, cfg->directory, &s->limits);
    store_set_retention(s->store, cfg->retention_ms);
    store_on_idle(s->store, on_store_idle, s);
    uv_tcp_init(loop, &s->_listener);
    s->_listener.data = s;
    s->_listening = 1; /* the handle is open; closed by shutdown or free */
    uv_timer_init(loop, &s->_grace);
    s->_grace.data = s;
    uv_signal_init(loop, &s->_sigterm);
    uv_signal_init(loop, &s->_sigint);
    uv_signal_init(loop, &s->_sighup);
    s->_sigterm.data = s->_sigint.data = s->_sighup.data = s;
    return 0;
}

static int bind_listen(server *s, const struct sockaddr *addr) {
    int rc = uv_tcp_bind(&s->_listener, addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->_listener, 511, on_connection);
    return rc;
}

int server_start(server *s, char *err, size_t errlen) {
    const config *cfg = s->cfg;
    int rc = bind_listen(s, (const struct sockaddr *)&cfg->bind_addr);
    if (rc != 0 && cfg->bind_any && (rc == UV_EAFNOSUPPORT || rc == UV_EADDRNOTAVAIL)) {
        /* No IPv6 here: every IPv4 interface instead. */
        struct sockaddr_in any4;
        uv_ip4_addr("0.0.0.0", ntohs(((struct sockaddr_in6 *)&cfg->bind_addr)->sin6_port),
                    &any4);
        uv_close((uv_handle_t *)&s->_listener, NULL);
        uv_tcp_init(s->loop, &s->_listener);
        s->_listener.data = s;
        rc = bind_listen(s, (const struct sockaddr *)&any4);
    }
    if (rc != 0) {
        snprintf(err, errlen, "PGOF_BIND_ADDRESS=\"%s\": cannot listen: %s", cfg->bind_address,
                 uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    uv_tcp_getsockname(&s->_listener, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        LOG(LOG_INFO, "listening on [%s]:%d", host, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        LOG(LOG_INFO, "listening on %s:%d", host, port);
    }
    uv_signal_start(&s->_sigterm, on_sigterm, SIGTERM);
    uv_signal_start(&s->_sigint, on_sigterm, SIGINT);
    uv_signal_start(&s->_sighup, on_sighup, SIGHUP);
    store_start(s->store);
    return 0;
}

void server_free(server *s) {
    store_free(s->store);
    s->store = NULL;
    keys_free(s->submit_keys);
    keys_free(s->merge_keys);
    s->submit_keys = s->merge_keys = NULL;
}
