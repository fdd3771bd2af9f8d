/*
 * encode.c: writes a merger's aggregate as a gzip-compressed pprof profile.
 *
 * DESIGN
 * A small hand-written protobuf writer, not nanopb's encoder. The tables are
 * already flat arrays; with nanopb every repeated field would be a callback
 * that re-enters pb_encode per element, and nanopb needs each submessage's
 * size first anyway (it encodes it twice through a sizing stream). Here each
 * submessage's size is computed directly from its fields, its tag and length
 * are written, then its bytes are streamed. Output goes through one 64 KiB
 * buffer into zlib's deflate (gzip wrapper) and from there in 64 KiB chunks to the
 * caller's pprof_write_cb, so memory does not depend on the size of the
 * output (only on its largest single message, built whole in a scratch
 * buffer when it exceeds 64 KiB). Samples and locations, nearly all of the
 * bytes, are sized first, then written with unchecked stores into room
 * reserved for them at once.
 *
 * Compression level: Z_BEST_SPEED, the level Go's runtime/pprof writes
 * profiles with. On the 1,000-profile benchmark level 6 made the output 21%
 * smaller but the whole merge 25% slower (deflate was the largest single
 * cost); a merged profile is written far less often than profiles arrive.
 * ISA-L's igzip deflated 4.4x faster but its output bytes varied between
 * encodes of the same aggregate in one process (docs/performance.md):
 * equal inputs must give equal bytes, for build caches and reproducible
 * builds keyed on the profile file.
 *
 * Compaction: only what a sample with a non-zero value reaches is written
 * (pprof's Merge drops zero samples and garbage-collects the rest), plus the
 * first mapping, which pprof keeps first as the main binary. Ids are
 * renumbered 1..n in the merger's order (first appearance), strings are
 * renumbered the same way with "" at 0. Field order and packing follow what
 * google/pprof's encoder writes; zero scalars are omitted (proto3).
 *
 * Threads: reads the merger only; the caller serialises merger calls.
 */
#include <string.h>
#include <zlib.h>

#include "pprof/internal.h"

#define BUF_SIZE (64u << 10)

typedef struct enc {
    const pprof_merger *m;
    pprof_write_cb cb;
    void *ctx;
    z_stream z;
    bool z_init;
    uint8_t *buf, *out;  /* protobuf bytes pending deflate; deflate output */
    size_t n;
    uint8_t *big;        /* a message larger than buf is built here */
    size_t big_cap;
    int rc;
    pprof_error *err;
    /* Renumbering: new id (1-based; strings 0-based) or 0 when dropped. */
    uint32_t *loc_id, *fn_id, *map_id, *str_id;
    bool *live; /* per sample */
} enc;

/* ---- output ------------------------------------------------------------ */

/* Deflates buf; flush Z_FINISH ends the gzip stream (trailer included). */
static int deflate_some(enc *e, int flush)
{
    int zr;

    e->z.next_in = e->buf;
    e->z.avail_in = (uInt)e->n;
    do {
        size_t have;
        e->z.next_out = e->out;
        e->z.avail_out = BUF_SIZE;
        zr = deflate(&e->z, flush);
        if (zr == Z_STREAM_ERROR)
            return pprof__fail(e->err, PPROF_EWRITE, "deflate failed");
        have = BUF_SIZE - e->z.avail_out;
        if (have && e->cb(e->ctx, e->out, have) != 0)
            return pprof__fail(e->err, PPROF_EWRITE,
                               "the output sink refused %zu bytes", have);
    } while (e->z.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
    e->n = 0;
    return 0;
}

static inline void put_bytes(enc *e, const void *p, size_t len)
{
    const uint8_t *b = p;

    while (len && !e->rc) {
        size_t take = BUF_SIZE - e->n;
        if (take > len)
            take = len;
        memcpy(e->buf + e->n, b, take);
        e->n += take;
        b += take;
        len -= take;
        if (e->n == BUF_SIZE)
            e->rc = deflate_some(e, Z_NO_FLUSH);
    }
}

static inline void put_varint(enc *e, uint64_t v)
{
    uint8_t tmp[10];
    size_t k = 0;

    if (e->n + 10 > BUF_SIZE) {
        while (v >= 0x80) {
            tmp[k++] = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        tmp[k++] = (uint8_t)v;
        put_bytes(e, tmp, k);
        return;
    }
    while (v >= 0x80) {
        e->buf[e->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    e->buf[e->n++] = (uint8_t)v;
}

static inline size_t vsize(uint64_t v)
{
    /* ceil(significant bits / 7), at least 1: (bits * 9 + 64) / 64 is exact
     * for 1..64 bits. */
    unsigned bits = 64 - (unsigned)__builtin_clzll(v | 1);
    return (bits * 9 + 64) / 64;
}

/* Field tags are all below 16: one byte. */
static inline void put_key(enc *e, unsigned field, unsigned wt)
{
    put_varint(e, (uint64_t)(field << 3 | wt));
}

/* A varint field, omitted when zero. */
static inline void put_field(enc *e, unsigned field, uint64_t v)
{
    if (!v)
        return;
    put_key(e, field, 0);
    put_varint(e, v);
}

static inline size_t field_size(uint64_t v)
{
    return v ? 1 + vsize(v) : 0;
}

static inline void put_len(enc *e, unsigned field, size_t len)
{
    put_key(e, field, 2);
    put_varint(e, len);
}

/*
 * Room for a whole message of len bytes: the tail of buf when it fits there
 * (after flushing buf if need be), else the big scratch buffer. A NULL
 * return has set e->rc. Write it with the w_* stores, then end_message().
 */
static uint8_t *begin_message(enc *e, size_t len)
{
    if (e->rc)
        return NULL;
    if (len <= BUF_SIZE) {
        if (BUF_SIZE - e->n < len && (e->rc = deflate_some(e, Z_NO_FLUSH)) != 0)
            return NULL;
        return e->buf + e->n;
    }
    if (len > e->big_cap) {
        uint8_t *nb = pprof__realloc(e->big, len);
        if (!nb) {
            e->rc = pprof__fail(e->err, PPROF_ENOMEM,
                                "out of memory encoding a %zu-byte message", len);
            return NULL;
        }
        e->big = nb;
        e->big_cap = len;
    }
    return e->big;
}

static void end_message(enc *e, const uint8_t *start, size_t len)
{
    if (start == e->big)
        put_bytes(e, start, len);
    else
        e->n += len;
}

static inline uint8_t *w_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Tag and length of a length-delimited field (tags are all below 16). */
static inline uint8_t *w_len(uint8_t *p, unsigned field, size_t len)
{
    *p++ = (uint8_t)(field << 3 | 2);
    return w_varint(p, len);
}

/* A varint field, omitted when zero. */
static inline uint8_t *w_field(uint8_t *p, unsigned field, uint64_t v)
{
    if (!v)
        return p;
    *p++ = (uint8_t)(field << 3);
    return w_varint(p, v);
}

/* ---- messages -------------------------------------------------------------- */

static size_t label_size(const enc *e, const pprof__mlabel *l)
{
    size_t n = field_size(e->str_id[l->key]);
    if (l->kind == PPROF__LABEL_STR)
        return n + field_size(e->str_id[l->str]);
    return n + field_size((uint64_t)l->num) + field_size(e->str_id[l->unit]);
}

static void put_sample(enc *e, uint32_t si)
{
    const pprof_merger *m = e->m;
    const pprof__msample *s = &PPROF__AT(m->samples, pprof__msample, si);
    const uint32_t *stack = PPROF__SLICE(m->stacks, const uint32_t, s->stack_off);
    const pprof__mlabel *lab = PPROF__SLICE(m->mlabels, const pprof__mlabel, s->label_off);
    size_t nst = m->sample_types.n / 2;
    const int64_t *v = PPROF__SLICE(m->values, const int64_t, (size_t)si * nst);
    size_t locs = 0, vals = 0, size = 0, j;
    uint8_t *start, *p;

    for (j = 0; j < s->nloc; j++)
        locs += vsize(e->loc_id[stack[j]]);
    for (j = 0; j < nst; j++)
        vals += vsize((uint64_t)v[j]);
    if (s->nloc)
        size += 1 + vsize(locs) + locs;
    if (nst)
        size += 1 + vsize(vals) + vals;
    for (j = 0; j < s->nlabel; j++) {
        size_t ls = label_size(e, &lab[j]);
        size += 1 + vsize(ls) + ls;
    }
    if (!(start = begin_message(e, 1 + vsize(size) + size)))
        return;
    p = w_len(start, 2, size);
    if (s->nloc) {
        p = w_len(p, 1, locs);
        for (j = 0; j < s->nloc; j++)
            p = w_varint(p, e->loc_id[stack[j]]);
    }
    if (nst) {
        p = w_len(p, 2, vals);
        for (j = 0; j < nst; j++)
            p = w_varint(p, (uint64_t)v[j]);
    }
    for (j = 0; j < s->nlabel; j++) {
        p = w_len(p, 3, label_size(e, &lab[j]));
        p = w_field(p, 1, e->str_id[lab[j].key]);
        if (lab[j].kind == PPROF__LABEL_STR) {
            p = w_field(p, 2, e->str_id[lab[j].str]);
        } else {
            p = w_field(p, 3, (uint64_t)lab[j].num);
            p = w_field(p, 4, e->str_id[lab[j].unit]);
        }
    }
    end_message(e, start, (size_t)(p - start));
}

/* Writes field as a submessage whose fields 1..n are the scalars v[0..n-1]
 * (zeros omitted, as proto3 does): mappings, functions, value types. */
static void put_scalars(enc *e, unsigned field, const uint64_t *v, unsigned n)
{
    size_t size = 0;
    unsigned j;

    for (j = 0; j < n; j++)
        size += field_size(v[j]);
    put_len(e, field, size);
    for (j = 0; j < n; j++)
        put_field(e, j + 1, v[j]);
}

static void put_mapping(enc *e, uint32_t mi)
{
    const pprof__mmap *mp = &PPROF__AT(e->m->mappings, pprof__mmap, mi);
    uint64_t f[10] = {
        e->map_id[mi], mp->start, mp->limit, mp->offset,
        e->str_id[mp->filename], e->str_id[mp->build_id],
        !!(mp->flags & PPROF__MAP_FUNCTIONS), !!(mp->flags & PPROF__MAP_FILENAMES),
        !!(mp->flags & PPROF__MAP_LINES), !!(mp->flags & PPROF__MAP_INLINE),
    };

    put_scalars(e, 3, f, 10);
}

static void put_location(enc *e, uint32_t li)
{
    const pprof_merger *m = e->m;
    const pprof__mloc *l = &PPROF__AT(m->locations, pprof__mloc, li);
    const pprof__mline *ln = PPROF__SLICE(m->mlines, const pprof__mline, l->line_off);
    uint64_t map = l->mapping == PPROF__NONE ? 0 : e->map_id[l->mapping];
    size_t size, j;
    uint8_t *start, *p;

    size = field_size(e->loc_id[li]) + field_size(map) + field_size(l->address) +
           field_size(l->is_folded);
    for (j = 0; j < l->nline; j++) {
        size_t ls = field_size(e->fn_id[ln[j].function]) + field_size((uint64_t)ln[j].line);
        size += 1 + vsize(ls) + ls;
    }
    if (!(start = begin_message(e, 1 + vsize(size) + size)))
        return;
    p = w_len(start, 4, size);
    p = w_field(p, 1, e->loc_id[li]);
    p = w_field(p, 2, map);
    p = w_field(p, 3, l->address);
    for (j = 0; j < l->nline; j++) {
        p = w_len(p, 4, field_size(e->fn_id[ln[j].function]) + field_size((uint64_t)ln[j].line));
        p = w_field(p, 1, e->fn_id[ln[j].function]);
        p = w_field(p, 2, (uint64_t)ln[j].line);
    }
    p = w_field(p, 5, l->is_folded);
    end_message(e, start, (size_t)(p - start));
}

static void put_function(enc *e, uint32_t fi)
{
    const pprof__mfunc *f = &PPROF__AT(e->m->functions, pprof__mfunc, fi);
    uint64_t v[5] = {e->fn_id[fi], e->str_id[f->name], e->str_id[f->system_name],
                     e->str_id[f->filename], (uint64_t)f->start_line};

    put_scalars(e, 5, v, 5);
}

static void put_valuetype(enc *e, unsigned field, uint32_t type, uint32_t unit)
{
    uint64_t v[2] = {e->str_id[type], e->str_id[unit]};

    put_scalars(e, field, v, 2);
}

/* ---- compaction -------------------------------------------------------------- */

/* Marks what live samples reach and numbers it; 0 means dropped. */
static void renumber(enc *e)
{
    const pprof_merger *m = e->m;
    const pprof__msample *smp = m->samples.p;
    const pprof__mloc *locs = m->locations.p;
    const pprof__mline *lines = m->mlines.p;
    const pprof__mfunc *fns = m->functions.p;
    const pprof__mmap *maps = m->mappings.p;
    const pprof__mlabel *lab = m->mlabels.p;
    const uint32_t *stacks = m->stacks.p;
    size_t nst = m->sample_types.n / 2, i, j;
    uint32_t next;

#define MARK(arr, i) ((arr)[i] = 1)
    for (i = 0; i < m->samples.n; i++) {
        const int64_t *v = PPROF__SLICE(m->values, const int64_t, i * nst);
        for (j = 0; j < nst && !v[j]; j++)
            ;
        e->live[i] = j < nst;
        if (!e->live[i])
            continue;
        for (j = 0; j < smp[i].nloc; j++)
            MARK(e->loc_id, stacks[smp[i].stack_off + j]);
        for (j = 0; j < smp[i].nlabel; j++) {
            const pprof__mlabel *l = &lab[smp[i].label_off + j];
            MARK(e->str_id, l->key);
            MARK(e->str_id, l->str);
            MARK(e->str_id, l->unit);
        }
    }
    if (m->mappings.n)
        MARK(e->map_id, 0);
    for (i = 0; i < m->locations.n; i++) {
        if (!e->loc_id[i])
            continue;
        if (locs[i].mapping != PPROF__NONE)
            MARK(e->map_id, locs[i].mapping);
        for (j = 0; j < locs[i].nline; j++)
            MARK(e->fn_id, lines[locs[i].line_off + j].function);
    }
    for (i = 0; i < m->functions.n; i++) {
        if (!e->fn_id[i])
            continue;
        MARK(e->str_id, fns[i].name);
        MARK(e->str_id, fns[i].system_name);
        MARK(e->str_id, fns[i].filename);
    }
    for (i = 0; i < m->mappings.n; i++) {
        if (!e->map_id[i])
            continue;
        MARK(e->str_id, maps[i].filename);
        MARK(e->str_id, maps[i].build_id);
    }
    for (i = 0; i < m->sample_types.n; i++)
        MARK(e->str_id, PPROF__AT(m->sample_types, uint32_t, i));
    for (i = 0; i < m->comments.n; i++)
        MARK(e->str_id, PPROF__AT(m->comments, uint32_t, i));
    MARK(e->str_id, m->period_type);
    MARK(e->str_id, m->period_unit);
    MARK(e->str_id, m->drop_frames);
    MARK(e->str_id, m->keep_frames);
    MARK(e->str_id, m->default_sample_type);
#undef MARK
    for (i = 0, next = 1; i < m->locations.n; i++)
        e->loc_id[i] = e->loc_id[i] ? next++ : 0;
    for (i = 0, next = 1; i < m->functions.n; i++)
        e->fn_id[i] = e->fn_id[i] ? next++ : 0;
    for (i = 0, next = 1; i < m->mappings.n; i++)
        e->map_id[i] = e->map_id[i] ? next++ : 0;
    /* String 0 ("") keeps id 0; others are numbered from 1. */
    e->str_id[0] = 0;
    for (i = 1, next = 1; i < m->strings.n; i++)
        e->str_id[i] = e->str_id[i] ? next++ : 0;
}

static void put_profile(enc *e)
{
    const pprof_merger *m = e->m;
    size_t i;

    for (i = 0; i + 1 < m->sample_types.n; i += 2)
        put_valuetype(e, 1, PPROF__AT(m->sample_types, uint32_t, i),
                      PPROF__AT(m->sample_types, uint32_t, i + 1));
    for (i = 0; i < m->samples.n && !e->rc; i++)
        if (e->live[i])
            put_sample(e, (uint32_t)i);
    for (i = 0; i < m->mappings.n && !e->rc; i++)
        if (e->map_id[i])
            put_mapping(e, (uint32_t)i);
    for (i = 0; i < m->locations.n && !e->rc; i++)
        if (e->loc_id[i])
            put_location(e, (uint32_t)i);
    for (i = 0; i < m->functions.n && !e->rc; i++)
        if (e->fn_id[i])
            put_function(e, (uint32_t)i);
    for (i = 0; i < m->strings.n && !e->rc; i++) {
        uint32_t len;
        const char *s;
        if (i && !e->str_id[i])
            continue;
        s = pprof__mstr_at(m, (uint32_t)i, &len);
        put_len(e, 6, len);
        put_bytes(e, s, len);
    }
    put_field(e, 7, e->str_id[m->drop_frames]);
    put_field(e, 8, e->str_id[m->keep_frames]);
    put_field(e, 9, (uint64_t)m->time_nanos);
    put_field(e, 10, (uint64_t)m->duration_nanos);
    put_valuetype(e, 11, m->period_type, m->period_unit);
    put_field(e, 12, (uint64_t)m->period);
    if (m->comments.n) {
        size_t size = 0;
        for (i = 0; i < m->comments.n; i++)
            size += vsize(e->str_id[PPROF__AT(m->comments, uint32_t, i)]);
        put_len(e, 13, size);
        for (i = 0; i < m->comments.n; i++)
            put_varint(e, e->str_id[PPROF__AT(m->comments, uint32_t, i)]);
    }
    put_field(e, 14, e->str_id[m->default_sample_type]);
}

int pprof_merger_write(const pprof_merger *m, pprof_write_cb cb, void *ctx,
                       pprof_error *err)
{
    enc e;
    int rc;

    if (!m->has_header)
        return pprof__fail(err, PPROF_EEMPTY, "no profile was added to the aggregate");
    memset(&e, 0, sizeof(e));
    e.m = m;
    e.cb = cb;
    e.ctx = ctx;
    e.err = err;
    e.buf = pprof__malloc(BUF_SIZE);
    e.out = pprof__malloc(BUF_SIZE);
    e.loc_id = pprof__calloc(m->locations.n + 1, sizeof(uint32_t));
    e.fn_id = pprof__calloc(m->functions.n + 1, sizeof(uint32_t));
    e.map_id = pprof__calloc(m->mappings.n + 1, sizeof(uint32_t));
    e.str_id = pprof__calloc(m->strings.n + 1, sizeof(uint32_t));
    e.live = pprof__calloc(m->samples.n + 1, sizeof(bool));
    if (!e.buf || !e.out || !e.loc_id || !e.fn_id || !e.map_id || !e.str_id || !e.live) {
        rc = pprof__fail(err, PPROF_ENOMEM, "out of memory encoding the aggregate");
        goto cleanup;
    }
    e.z.zalloc = pprof__zalloc;
    e.z.zfree = pprof__zfree;
    /* 16 + MAX_WBITS: write a gzip wrapper (zlib's documented convention). */
    if (deflateInit2(&e.z, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        rc = pprof__fail(err, PPROF_ENOMEM, "out of memory starting deflate");
        goto cleanup;
    }
    e.z_init = true;
    renumber(&e);
    put_profile(&e);
    if ((rc = e.rc))
        goto cleanup;
    rc = deflate_some(&e, Z_FINISH);
cleanup:
    if (e.z_init)
        deflateEnd(&e.z);
    pprof__free(e.big);
    pprof__free(e.live);
    pprof__free(e.str_id);
    pprof__free(e.map_id);
    pprof__free(e.fn_id);
    pprof__free(e.loc_id);
    pprof__free(e.out);
    pprof__free(e.buf);
    return rc;
}

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static int on_mem_write(void *ctx, const void *data, size_t len)
{
    membuf *b = ctx;

    if (len > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64u << 10;
        uint8_t *np;
        while (cap - b->n < len) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        np = pprof__realloc(b->p, cap);
        if (!np)
            return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    return 0;
}

int pprof_merger_encode(const pprof_merger *m, uint8_t **out, size_t *out_len,
                        pprof_error *err)
{
    membuf b = {NULL, 0, 0};
    int rc = pprof_merger_write(m, on_mem_write, &b, err);

    *out = NULL;
    *out_len = 0;
    if (rc) {
        pprof__free(b.p);
        if (rc == PPROF_EWRITE)
            return pprof__fail(err, PPROF_ENOMEM, "out of memory buffering the encoded profile");
        return rc;
    }
    *out = b.p;
    *out_len = b.n;
    return 0;
}
