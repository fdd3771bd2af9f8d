/* spares.c: decoded profiles kept for their memory (see spares.h). */
#include "collector/spares.h"

#include "collector/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

struct spares {
    uv_mutex_t lock;
    size_t max_bytes;
    size_t n, cap;
    pprof_profile *kept[]; /* cap of them, n in use */
};

spares *spares_new(size_t max_count, size_t max_bytes) {
    spares *s = xcalloc(1, sizeof *s + max_count * sizeof s->kept[0]);
    if (uv_mutex_init(&s->lock) != 0) {
        /* Only on exhausted resources at start-up: as for an allocation. */
        fprintf(stderr, "pgof-collector: cannot create a mutex\n");
        abort();
    }
    s->max_bytes = max_bytes;
    s->cap = max_count;
    return s;
}

pprof_profile *spares_take(spares *s) {
    pprof_profile *p = NULL;
    uv_mutex_lock(&s->lock);
    if (s->n > 0)
        p = s->kept[--s->n];
    uv_mutex_unlock(&s->lock);
    return p;
}

void spares_give(spares *s, pprof_profile *p) {
    if (p == NULL)
        return;
    if (pprof_profile_memory(p) <= s->max_bytes) {
        uv_mutex_lock(&s->lock);
        int kept = s->n < s->cap;
        if (kept)
            s->kept[s->n++] = p;
        uv_mutex_unlock(&s->lock);
        if (kept)
            return;
    }
    pprof_profile_free(p);
}

void spares_free(spares *s) {
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        pprof_profile_free(s->kept[i]);
    uv_mutex_destroy(&s->lock);
    free(s);
}
