/*
 * util.c: the pprof engine's small shared helpers: the allocator seam, the
 * budgeted growable array, error sentences, quoting of untrusted bytes and
 * the hash function.
 *
 * DESIGN
 * Nothing here keeps state except the allocator seam, a process-wide set of
 * three function pointers that only unit tests change (before any engine call
 * runs), so every other function is safe from any thread. The engine never
 * aborts on allocation failure: sizes come from untrusted input, so each
 * caller turns NULL into PPROF_ENOMEM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pprof/internal.h"

static pprof__allocator allocator = {malloc, realloc, free};

void pprof__set_allocator(const pprof__allocator *a)
{
    allocator.malloc_fn = a && a->malloc_fn ? a->malloc_fn : malloc;
    allocator.realloc_fn = a && a->realloc_fn ? a->realloc_fn : realloc;
    allocator.free_fn = a && a->free_fn ? a->free_fn : free;
}

void *pprof__malloc(size_t n)
{
    return allocator.malloc_fn(n ? n : 1);
}

void *pprof__calloc(size_t n, size_t size)
{
    void *p;

    if (size && n > SIZE_MAX / size)
        return NULL;
    p = pprof__malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *pprof__realloc(void *p, size_t n)
{
    return allocator.realloc_fn(p, n ? n : 1);
}

void pprof__free(void *p)
{
    if (p)
        allocator.free_fn(p);
}

void *pprof__zalloc(void *opaque, unsigned items, unsigned size)
{
    (void)opaque;
    return pprof__calloc(items, size);
}

void pprof__zfree(void *opaque, void *p)
{
    (void)opaque;
    pprof__free(p);
}

int pprof__vec_grow(pprof__vec *v, size_t size, size_t more, pprof__budget *b)
{
    size_t need, cap;
    uint64_t extra;
    void *np;

    if (more > SIZE_MAX - v->n)
        return PPROF_ELIMIT;
    need = v->n + more;
    if (need <= v->cap)
        return 0;
    cap = v->cap ? v->cap : 16;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > SIZE_MAX / size)
        return PPROF_ELIMIT;
    extra = (uint64_t)(cap - v->cap) * size;
    if (!pprof__budget_fits(b, extra)) {
        /* Doubling overshoots the budget: grow by an eighth (or the need,
         * if more), within what the budget has left. Growing to the exact
         * need copied the whole array once per element up to the limit: a
         * 9 KB gzip sample of 7.5 million frames kept a worker busy for
         * 3.6 s. With eighths, at most about eight copies remain. */
        uint64_t left = (b->used <= b->limit ? b->limit - b->used : 0) / size;
        uint64_t step = v->cap / 8;
        if (step < need - v->cap)
            step = need - v->cap;
        if (step > left)
            step = left;
        if (step < need - v->cap)
            return PPROF_ELIMIT;
        cap = v->cap + (size_t)step;
        extra = (uint64_t)(cap - v->cap) * size;
    }
    if (cap > v->room) {
        np = pprof__realloc(v->p, cap * size);
        if (!np)
            return PPROF_ENOMEM;
        v->p = np;
        v->room = cap;
    }
    v->cap = cap;
    if (b)
        b->used += extra;
    return 0;
}

void pprof__vec_free(pprof__vec *v)
{
    pprof__free(v->p);
    v->p = NULL;
    v->n = v->cap = v->room = 0;
}

void pprof__vec_clear(pprof__vec *v)
{
    v->n = v->cap = 0;
}

const char *pprof_strerror(int code)
{
    switch (code) {
    case PPROF_OK: return "ok";
    case PPROF_EIO: return "i/o error";
    case PPROF_EGZIP: return "gzip";
    case PPROF_ETOOBIG: return "too big";
    case PPROF_EPROTO: return "malformed protobuf";
    case PPROF_EINVALID: return "invalid profile";
    case PPROF_ENOTCPU: return "not a CPU profile";
    case PPROF_EINCOMPAT: return "incompatible profiles";
    case PPROF_ENOMEM: return "out of memory";
    case PPROF_ELIMIT: return "limit exceeded";
    case PPROF_EEMPTY: return "empty input";
    case PPROF_EWRITE: return "write failed";
    default: return "unknown error";
    }
}

int pprof__fail(pprof_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

uint64_t pprof__hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    uint64_t w;

    while (n >= 8) {
        memcpy(&w, b, 8);
        h = pprof__hash_mix(h, w);
        b += 8;
        n -= 8;
    }
    w = 0;
    if (n)
        memcpy(&w, b, n);
    return pprof__hash_mix(h, w);
}

bool pprof__str_eq(const pprof_profile *p, int64_t i, const char *s)
{
    uint32_t len;
    const char *str = pprof__str(p, i, &len);

    return strlen(s) == len && memcmp(str, s, len) == 0;
}
