/*
 * routes.h: what each endpoint does, once conn.c has parsed a request.
 *
 * DESIGN
 * conn.c owns the wire (parsing, buffers, timers, writing); this file owns
 * the meaning: which path and method go where, who may call what (bearer
 * keys), which limits apply to a body, and what each endpoint answers.
 * Decisions that need only the request head (route, method, auth, declared
 * length, Expect, Content-Encoding) are taken in routes_headers(), before
 * any body byte is stored; the rest in routes_dispatch() once the message
 * is complete. Loop thread only.
 */
#ifndef COLLECTOR_ROUTES_H
#define COLLECTOR_ROUTES_H

#include <stddef.h>

struct conn;

enum {
    ROUTE_NONE,
    ROUTE_HEALTHZ,
    ROUTE_METRICS,
    ROUTE_SUBMIT,
    ROUTE_MERGE,
};

/*
 * Called from on_headers_complete. Returns 0 to read the body (discarded
 * unless the route stores it), or HPE_PAUSED after setting c->_action to
 * CONN_ACT_ERROR (with c->req.fail_*) or CONN_ACT_OPEN.
 */
int routes_headers(struct conn *c);

/* Runs the endpoint once the request is complete (state WORK). */
void routes_dispatch(struct conn *c);

/* Starts the upload's temporary file (CONN_ACT_OPEN). */
void routes_open_upload(struct conn *c);

#endif /* COLLECTOR_ROUTES_H */
