/*
 * pgo_edges.h: the weighted call graph Go's compiler builds from a CPU
 * profile, computed from our own decoder's tables, for the shape=pgo
 * equivalence tests (test/pprof/test_shape.c, `pprof-dump pgo-edges`).
 *
 * DESIGN
 * A transcription of what Go 1.21-1.23 do with a -pgo profile:
 * cmd/internal/pgo/pprof.go (FromPProf, createNamedEdgeMap; in 1.21 and
 * 1.22 cmd/compile/internal/pgo/irgraph.go) on top of the graph of
 * internal/profile/graph.go (NewGraph, CreateNodes, nodeInfo; in 1.21 and
 * 1.22 cmd/compile/internal/pgo/internal/graph):
 *   - the value is the first sample type samples/count or cpu/nanoseconds;
 *     samples whose value is 0 are skipped;
 *   - a node is (function name, function start line, line, location
 *     address), one per line of a location (inlined frames), or (address)
 *     for a location without lines;
 *   - per sample only the two innermost locations are walked, outermost
 *     frame first; each node's cum gets the value once per sample, the
 *     last node's flat gets it, and each consecutive node pair (parent,
 *     child) with parent != child adds the value to that edge once per
 *     sample;
 *   - the graph keeps nodes whose flat or cum is non-zero; the named edge
 *     table sums edge weights by (caller name, caller line - caller start
 *     line, callee name), and the total weight is the sum of all edges;
 *   - node weights by name (flat and cum summed over the nodes of one
 *     name) are what Go 1.21/1.22 stored next to each edge (NFlat, NCum).
 * The result is a sorted text, one line per named edge ("edge CALLER
 * OFFSET CALLEE WEIGHT") and per name ("node NAME FLAT CUM"), then
 * "total WEIGHT" and "start_lines yes|no", so two profiles give the
 * compiler the same graph exactly when their texts are equal.
 *
 * Header-only (static functions): test code, included by the cmocka test
 * and by pprof-dump. Aborts on allocation failure.
 */
#ifndef PGO_EDGES_H
#define PGO_EDGES_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/internal.h"

typedef struct pe_node {
    const char *name; /* NULL: a location without lines */
    uint32_t nlen;
    uint64_t addr;
    int64_t start, line;
    int64_t flat, cum;
} pe_node;

typedef struct pe_edge {
    uint32_t src, dst;
    int64_t w;
} pe_edge;

typedef struct pe_graph {
    pe_node *nodes;
    size_t nnodes, cap_nodes;
    uint32_t *nslots; /* node hash table: index + 1 */
    size_t ncap;
    pe_edge *edges;
    size_t nedges, cap_edges;
    uint32_t *eslots;
    size_t ecap;
} pe_graph;

static void *pe_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

static uint64_t pe_hash(const void *d, size_t n, uint64_t h)
{
    const unsigned char *b = d;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t pe_node_hash(const pe_node *k)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = pe_hash(&k->addr, sizeof k->addr, h);
    h = pe_hash(&k->start, sizeof k->start, h);
    h = pe_hash(&k->line, sizeof k->line, h);
    if (k->name)
        h = pe_hash(k->name, k->nlen, h ^ 1);
    return h;
}

static int pe_node_eq(const pe_node *a, const pe_node *b)
{
    if ((a->name == NULL) != (b->name == NULL) || a->addr != b->addr || a->start != b->start ||
        a->line != b->line)
        return 0;
    return a->name == NULL || (a->nlen == b->nlen && memcmp(a->name, b->name, a->nlen) == 0);
}

static void pe_rehash_nodes(pe_graph *g)
{
    size_t i, j;

    g->ncap = g->ncap ? g->ncap * 2 : 1024;
    free(g->nslots);
    g->nslots = calloc(g->ncap, sizeof(uint32_t));
    if (!g->nslots)
        abort();
    for (i = 0; i < g->nnodes; i++) {
        for (j = pe_node_hash(&g->nodes[i]) & (g->ncap - 1); g->nslots[j]; j = (j + 1) & (g->ncap - 1))
            ;
        g->nslots[j] = (uint32_t)i + 1;
    }
}

static uint32_t pe_node_id(pe_graph *g, const pe_node *k)
{
    size_t j;

    if ((g->nnodes + 1) * 2 > g->ncap)
        pe_rehash_nodes(g);
    for (j = pe_node_hash(k) & (g->ncap - 1); g->nslots[j]; j = (j + 1) & (g->ncap - 1))
        if (pe_node_eq(&g->nodes[g->nslots[j] - 1], k))
            return g->nslots[j] - 1;
    if (g->nnodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? g->cap_nodes * 2 : 256;
        g->nodes = pe_xrealloc(g->nodes, g->cap_nodes * sizeof(pe_node));
    }
    g->nodes[g->nnodes] = *k;
    g->nslots[j] = (uint32_t)g->nnodes + 1;
    return (uint32_t)g->nnodes++;
}

static uint64_t pe_edge_hash(uint32_t s, uint32_t d)
{
    return ((uint64_t)s * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)d * 0xc2b2ae3d27d4eb4full);
}

static void pe_rehash_edges(pe_graph *g)
{
    size_t i, j;

    g->ecap = g->ecap ? g->ecap * 2 : 1024;
    free(g->eslots);
    g->eslots = calloc(g->ecap, sizeof(uint32_t));
    if (!g->eslots)
        abort();
    for (i = 0; i < g->nedges; i++) {
        for (j = pe_edge_hash(g->edges[i].src, g->edges[i].dst) & (g->ecap - 1); g->eslots[j];
             j = (j + 1) & (g->ecap - 1))
            ;
        g->eslots[j] = (uint32_t)i + 1;
    }
}

static void pe_add_edge(pe_graph *g, uint32_t s, uint32_t d, int64_t w)
{
    size_t j;

    if ((g->nedges + 1) * 2 > g->ecap)
        pe_rehash_edges(g);
    for (j = pe_edge_hash(s, d) & (g->ecap - 1); g->eslots[j]; j = (j + 1) & (g->ecap - 1)) {
        pe_edge *e = &g->edges[g->eslots[j] - 1];
        if (e->src == s && e->dst == d) {
            e->w += w;
            return;
        }
    }
    if (g->nedges == g->cap_edges) {
        g->cap_edges = g->cap_edges ? g->cap_edges * 2 : 256;
        g->edges = pe_xrealloc(g->edges, g->cap_edges * sizeof(pe_edge));
    }
    g->edges[g->nedges].src = s;
    g->edges[g->nedges].dst = d;
    g->edges[g->nedges].w = w;
    g->eslots[j] = (uint32_t)g->nedges + 1;
    g->nedges++;
}

/* A growable text of lines. */
typedef struct pe_text {
    char **lines;
    size_t n, cap;
} pe_text;

static void pe_line(pe_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pe_line(pe_text *t, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->lines = pe_xrealloc(t->lines, t->cap * sizeof(char *));
    }
    t->lines[t->n++] = s;
}

static int pe_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Builds the text described above for p (a decoded, validated profile).
 * Returns a malloc'd NUL-terminated text (owned), or NULL with *why set
 * when the compiler would refuse the profile's sample types.
 */
static char *pgo_edges_text(const pprof_profile *p, const char **why)
{
    pe_graph g;
    pe_text t = {0};
    size_t idx = SIZE_MAX, i, j, total_len = 0;
    int64_t total = 0;
    int start_lines = 0;
    char *out, *o;

    memset(&g, 0, sizeof g);
    for (i = 0; i < p->sample_types.n; i++) {
        const pprof__valuetype *st = &PPROF__AT(p->sample_types, pprof__valuetype, i);
        if ((pprof__str_eq(p, st->type, "samples") && pprof__str_eq(p, st->unit, "count")) ||
            (pprof__str_eq(p, st->type, "cpu") && pprof__str_eq(p, st->unit, "nanoseconds"))) {
            idx = i;
            break;
        }
    }
    if (idx == SIZE_MAX) {
        *why = "no samples/count or cpu/nanoseconds sample type";
        return NULL;
    }
    for (i = 0; i < p->samples.n; i++) {
        const pprof__sample *s = &PPROF__AT(p->samples, pprof__sample, i);
        int64_t w = PPROF__AT(p->values, int64_t, s->val_off + idx);
        uint32_t seen_nodes[64], nseen = 0, parent = UINT32_MAX;
        uint64_t seen_edges[64];
        uint32_t nseen_e = 0;
        int k;

        if (w == 0)
            continue;
        k = s->nloc < 2 ? (int)s->nloc - 1 : 1;
        for (; k >= 0; k--) {
            uint32_t li = (uint32_t)PPROF__AT(p->locids, uint64_t, s->loc_off + (uint32_t)k);
            const pprof__location *l = &PPROF__AT(p->locations, pprof__location, li);
            uint32_t nl = l->nline ? l->nline : 1;
            for (j = nl; j-- > 0;) {
                pe_node key;
                uint32_t n, q;
                int saw = 0;
                memset(&key, 0, sizeof key);
                key.addr = l->address;
                if (l->nline) {
                    const pprof__line *ln = &PPROF__AT(p->lines, pprof__line, l->line_off + j);
                    const pprof__function *f =
                        &PPROF__AT(p->functions, pprof__function, ln->function);
                    key.name = pprof__str(p, f->name, &key.nlen);
                    key.start = f->start_line;
                    key.line = ln->line;
                }
                n = pe_node_id(&g, &key);
                for (q = 0; q < nseen; q++)
                    saw |= seen_nodes[q] == n;
                if (!saw) {
                    if (nseen == 64)
                        abort(); /* deeper inlining than any real profile */
                    seen_nodes[nseen++] = n;
                    g.nodes[n].cum += w;
                }
                if (parent != UINT32_MAX && n != parent) {
                    uint64_t pair = (uint64_t)parent << 32 | n;
                    int dup = 0;
                    for (q = 0; q < nseen_e; q++)
                        dup |= seen_edges[q] == pair;
                    if (!dup) {
                        if (nseen_e == 64)
                            abort();
                        seen_edges[nseen_e++] = pair;
                        pe_add_edge(&g, parent, n, w);
                    }
                }
                parent = n;
            }
        }
        if (parent != UINT32_MAX)
            g.nodes[parent].flat += w;
    }
    for (i = 0; i < g.nnodes; i++)
        if ((g.nodes[i].flat || g.nodes[i].cum) && g.nodes[i].start != 0)
            start_lines = 1;
    /* Named edges, then node weights by name: one line each before
     * summing; equal keys are summed after sorting. */
    {
        pe_text raw = {0};
        for (i = 0; i < g.nedges; i++) {
            const pe_edge *e = &g.edges[i];
            const pe_node *s = &g.nodes[e->src], *d = &g.nodes[e->dst];
            if (!s->flat && !s->cum)
                continue;
            total += e->w;
            pe_line(&raw, "edge %.*s %" PRId64 " %.*s\t%" PRId64, s->name ? (int)s->nlen : 0,
                    s->name ? s->name : "", s->line - s->start, d->name ? (int)d->nlen : 0,
                    d->name ? d->name : "", e->w);
        }
        for (i = 0; i < g.nnodes; i++) {
            const pe_node *n = &g.nodes[i];
            if (!n->flat && !n->cum)
                continue;
            pe_line(&raw, "node %.*s\t%" PRId64 " %" PRId64, n->name ? (int)n->nlen : 0,
                    n->name ? n->name : "", n->flat, n->cum);
        }
        qsort(raw.lines, raw.n, sizeof(char *), pe_strcmp);
        for (i = 0; i < raw.n;) {
            char *tab = strchr(raw.lines[i], '\t');
            size_t klen = (size_t)(tab - raw.lines[i]);
            int64_t a = 0, b = 0;
            int is_node = strncmp(raw.lines[i], "node ", 5) == 0;
            for (j = i; j < raw.n && strncmp(raw.lines[j], raw.lines[i], klen + 1) == 0; j++) {
                int64_t x = 0, y = 0;
                char *v = raw.lines[j] + klen + 1;
                if (is_node) {
                    sscanf(v, "%" SCNd64 " %" SCNd64, &x, &y);
                } else {
                    sscanf(v, "%" SCNd64, &x);
                }
                a += x;
                b += y;
            }
            if (is_node)
                pe_line(&t, "%.*s %" PRId64 " %" PRId64, (int)klen, raw.lines[i], a, b);
            else
                pe_line(&t, "%.*s %" PRId64, (int)klen, raw.lines[i], a);
            i = j;
        }
        for (i = 0; i < raw.n; i++)
            free(raw.lines[i]);
        free(raw.lines);
    }
    pe_line(&t, "total %" PRId64, total);
    pe_line(&t, "start_lines %s", start_lines ? "yes" : "no");
    for (i = 0; i < t.n; i++)
        total_len += strlen(t.lines[i]) + 1;
    out = o = pe_xrealloc(NULL, total_len + 1);
    for (i = 0; i < t.n; i++) {
        size_t l = strlen(t.lines[i]);
        memcpy(o, t.lines[i], l);
        o[l] = '\n';
        o += l + 1;
        free(t.lines[i]);
    }
    *o = '\0';
    free(t.lines);
    free(g.nodes);
    free(g.nslots);
    free(g.edges);
    free(g.eslots);
    return out;
}

#endif /* PGO_EDGES_H */
