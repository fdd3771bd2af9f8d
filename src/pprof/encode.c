/*
 * encode.c: writes a merger's aggregate as a gzip-compressed pprof profile.
 *
 * DESIGN
 * A small hand-written protobuf writer, not nanopb's encoder. The tables are
 * already flat arrays; with nanopb every repeated field would be a callback
 * that re-enters pb_encode per element, and nanopb needs each submessage's
 * size first anyway (it encodes it twice through a sizing stream). Here each
 * submessage's size is computed directly from its fields, then its tag,
 * length and bytes are written with unchecked stores into room reserved for
 * the whole message.
 *
 * Pieces. The protobuf bytes are cut into pieces at points that depend only
 * on the aggregate: a piece holds one section's entries from merger index
 * k*G up to (k+1)*G (G per section, below), or ends early once it reaches
 * PIECE_MAX_RAW bytes. Each piece is deflated on its own (raw deflate from a
 * reset state, ended by a sync flush, so it is byte-aligned and refers to
 * nothing before it); the gzip stream is the header, the pieces in order, an
 * empty final block, and the CRC-32 (combined from the pieces') and length.
 * That is one valid gzip member, the way pigz writes its output.
 *
 * Why: deflate is most of an encode, and the collector re-encodes its
 * aggregate after every change. A pprof_encoder remembers each piece's
 * protobuf bytes with its deflated bytes; when a piece comes out equal
 * (memcmp) to the one it remembers, the deflated bytes are reused. After one
 * more profile only the pieces it touched and the small tail (times) are
 * deflated again. Because every piece is deflated from a reset state, the
 * output is a function of the aggregate alone, whatever the encoder
 * remembers: equal aggregates give equal bytes, as build caches and
 * reproducible builds need. A pprof_merger_write without an encoder keeps
 * nothing, so its memory is one piece, not the whole output.
 *
 * Compression level: Z_BEST_SPEED, the level Go's runtime/pprof writes
 * profiles with. On the 1,000-profile benchmark level 6 made the output 21%
 * smaller but the whole merge 25% slower (deflate was the largest single
 * cost); a merged profile is written far less often than profiles arrive.
 * ISA-L's igzip deflated 4.4x faster but its output bytes varied between
 * encodes of the same aggregate in one process (docs/performance.md).
 *
 * Compaction: only what a sample with a non-zero value reaches is written
 * (pprof's Merge drops zero samples and garbage-collects the rest), plus the
 * first mapping, which pprof keeps first as the main binary. Ids are
 * renumbered 1..n in the merger's order (first appearance), strings are
 * renumbered the same way with "" at 0. Field order and packing follow what
 * google/pprof's encoder writes; zero scalars are omitted (proto3).
 *
 * Threads: reads the merger only; the caller serialises merger calls and
 * the calls on one pprof_encoder.
 */
#include <string.h>
#include <zlib.h>

#include "pprof/internal.h"

/* Entries of each section per piece: about 16-40 KB of protobuf for Go CPU
 * profiles, big enough that deflate loses little at the cuts, small enough
 * that one more profile dirties few of them. */
#define PIECE_SAMPLES PPROF__SAMPLE_GROUP /* the merger stamps changes per group */
#define PIECE_MAPPINGS 1024u
#define PIECE_LOCATIONS 2048u
#define PIECE_FUNCTIONS 4096u
#define PIECE_STRINGS 4096u
#define PIECE_MAX_RAW (1u << 20)
#define SINK_MAX (64u << 10) /* largest chunk handed to the sink */

enum { SEC_HEAD, SEC_SAMPLES, SEC_MAPPINGS, SEC_LOCATIONS, SEC_FUNCTIONS, SEC_STRINGS,
       SEC_TAIL, SEC_N };

/* One piece as the last encode wrote it. */
typedef struct piece {
    uint8_t *raw, *z; /* protobuf bytes; their deflated bytes */
    size_t raw_len, raw_cap, z_len;
    uint32_t crc;     /* CRC-32 of raw */
    /* What it was built from: group number, the group's end (merger index),
     * and for samples the group's change stamp. */
    size_t group, end;
    uint64_t stamp;
} piece;

/* Renumbering tables (see renumber()), indexed by merger entry. */
enum { IDS_LOC, IDS_FN, IDS_MAP, IDS_STR, IDS_N };

struct pprof_encoder {
    bool keep;             /* remember pieces between encodes */
    z_stream z;
    bool z_init;
    uint8_t *zbuf;         /* deflate output of the piece being written */
    size_t zbuf_cap;
    piece *pieces[SEC_N];
    size_t npieces[SEC_N];
    pprof_encoder_stats last;
    /* The last successful encode: which merger, at which shape, numbered how
     * (uid 0: none, or the pieces may not match the tables below). */
    uint64_t uid, shape;
    uint32_t *ids[IDS_N];
    size_t nids[IDS_N];
    bool *live;
};

typedef struct enc {
    const pprof_merger *m;
    pprof_encoder *x;
    pprof_write_cb cb;
    void *ctx;
    uint8_t *buf;        /* protobuf bytes of the piece being built */
    size_t n, cap;
    unsigned sec;        /* section of the piece being built */
    size_t ord;          /* its number within the section */
    size_t used[SEC_N];  /* pieces written per section */
    size_t grp, grp_end; /* group being built, and where it ends */
    uint64_t grp_stamp;  /* its change stamp (samples) */
    bool stable;         /* entries x numbered last time keep their numbers */
    bool borrowed;       /* the tables below are x's */
    uint32_t crc;        /* CRC-32 of everything written so far */
    uint64_t total;      /* and its length */
    int rc;
    pprof_error *err;
    /* Renumbering: new id (1-based; strings 0-based) or 0 when dropped. */
    uint32_t *loc_id, *fn_id, *map_id, *str_id;
    bool *live; /* per sample */
} enc;

/* ---- output ------------------------------------------------------------ */

/* Hands len bytes to the sink, in chunks of at most SINK_MAX. */
static int emit(enc *e, const uint8_t *p, size_t len)
{
    while (len) {
        size_t take = len < SINK_MAX ? len : SINK_MAX;
        if (e->cb(e->ctx, p, take) != 0)
            return pprof__fail(e->err, PPROF_EWRITE,
                               "the output sink refused %zu bytes", take);
        p += take;
        len -= take;
    }
    return 0;
}

/* Makes room for len more bytes in the piece; 0, or sets and returns e->rc. */
static int room(enc *e, size_t len)
{
    size_t cap;
    uint8_t *nb;

    if (e->rc || e->cap - e->n >= len)
        return e->rc;
    cap = e->cap ? e->cap : 64u << 10;
    while (cap - e->n < len) {
        if (cap > SIZE_MAX / 2)
            return e->rc = pprof__fail(e->err, PPROF_ENOMEM, "a message is too big to encode");
        cap *= 2;
    }
    if (!(nb = pprof__realloc(e->buf, cap)))
        return e->rc = pprof__fail(e->err, PPROF_ENOMEM,
                                   "out of memory encoding a %zu-byte message", len);
    e->buf = nb;
    e->cap = cap;
    return 0;
}

/* Deflates the piece in buf into x->zbuf, from a reset state. */
static int deflate_piece(enc *e, size_t *z_len)
{
    pprof_encoder *x = e->x;
    size_t need = deflateBound(&x->z, e->n) + 16;
    int zr;

    if (deflateReset(&x->z) != Z_OK)
        return pprof__fail(e->err, PPROF_EWRITE, "deflate failed");
    x->z.next_in = e->buf;
    x->z.avail_in = (uInt)e->n;
    *z_len = 0;
    do {
        if (x->zbuf_cap - *z_len < need) {
            uint8_t *nb = pprof__realloc(x->zbuf, *z_len + need);
            if (!nb)
                return pprof__fail(e->err, PPROF_ENOMEM, "out of memory deflating");
            x->zbuf = nb;
            x->zbuf_cap = *z_len + need;
        }
        x->z.next_out = x->zbuf + *z_len;
        x->z.avail_out = (uInt)(x->zbuf_cap - *z_len);
        /* The sync flush byte-aligns the end and marks no block final. */
        zr = deflate(&x->z, Z_SYNC_FLUSH);
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return pprof__fail(e->err, PPROF_EWRITE, "deflate failed");
        *z_len = x->zbuf_cap - x->z.avail_out;
    } while (x->z.avail_out == 0);
    return 0;
}

/* The piece x remembers as number ord of section sec, grown as needed. */
static piece *slot(enc *e)
{
    pprof_encoder *x = e->x;
    size_t have = x->npieces[e->sec];

    if (e->ord >= have) {
        size_t want = e->ord + 1 > have * 2 ? e->ord + 1 : have * 2;
        piece *np = pprof__realloc(x->pieces[e->sec], want * sizeof *np);
        if (!np) {
            pprof__fail(e->err, PPROF_ENOMEM, "out of memory keeping the encoded pieces");
            return NULL;
        }
        memset(np + have, 0, (want - have) * sizeof *np);
        x->pieces[e->sec] = np;
        x->npieces[e->sec] = want;
    }
    return &x->pieces[e->sec][e->ord];
}

/* Copies the piece just built, and its z_len deflated bytes, into pc. Exact
 * sizes: a small piece must not keep a big buffer. */
static int keep_piece(enc *e, piece *pc, size_t z_len)
{
    uint8_t *z = pprof__malloc(z_len ? z_len : 1);

    if (!z)
        return pprof__fail(e->err, PPROF_ENOMEM, "out of memory keeping the encoded pieces");
    if (pc->raw_cap < e->n || pc->raw_cap / 2 > e->n) {
        uint8_t *raw = pprof__realloc(pc->raw, e->n);
        if (!raw) {
            pprof__free(z);
            return pprof__fail(e->err, PPROF_ENOMEM, "out of memory keeping the encoded pieces");
        }
        pc->raw = raw;
        pc->raw_cap = e->n;
    }
    memcpy(pc->raw, e->buf, e->n);
    memcpy(z, e->x->zbuf, z_len);
    pprof__free(pc->z);
    pc->z = z;
    return 0;
}

/* Ends the piece being built: reuses or deflates it, and sends it on. */
static void cut(enc *e)
{
    pprof_encoder *x = e->x;
    piece fresh = {0}, *pc = &fresh;
    size_t z_len = 0;

    if (e->rc || e->n == 0)
        return;
    if (x->keep && !(pc = slot(e))) {
        e->rc = PPROF_ENOMEM;
        return;
    }
    if (x->keep && pc->z && pc->raw_len == e->n && memcmp(pc->raw, e->buf, e->n) == 0) {
        x->last.pieces_reused++;
        x->last.bytes_reused += e->n;
    } else {
        if ((e->rc = deflate_piece(e, &z_len)) != 0)
            return;
        if (x->keep && (e->rc = keep_piece(e, pc, z_len)) != 0)
            return;
        if (!x->keep)
            pc->z = x->zbuf;
        pc->raw_len = e->n;
        pc->z_len = z_len;
        pc->crc = (uint32_t)crc32(0, e->buf, (uInt)e->n);
    }
    pc->group = e->grp;
    pc->end = e->grp_end;
    pc->stamp = e->grp_stamp;
    x->last.pieces++;
    x->last.bytes += e->n;
    e->crc = (uint32_t)crc32_combine(e->crc, pc->crc, (z_off_t)pc->raw_len);
    e->total += pc->raw_len;
    e->n = 0;
    e->used[e->sec] = ++e->ord;
    e->rc = emit(e, pc->z, pc->z_len);
}

/* Ends the current piece and starts section sec. */
static void section(enc *e, unsigned sec)
{
    cut(e);
    e->sec = sec;
    e->ord = 0;
}

/* Sends on the pieces of group g as the last encode wrote them, if nothing
 * they were built from changed: the same numbering (e->stable), no entry
 * added to the group (end), no sample in it changed (stamp). */
static bool reuse_group(enc *e, size_t g, size_t end, uint64_t stamp)
{
    pprof_encoder *x = e->x;
    const piece *pcs = x->pieces[e->sec];
    size_t have = x->npieces[e->sec], k;

    if (!e->stable)
        return false;
    for (k = e->ord; k < have && pcs[k].z && pcs[k].group == g; k++)
        if (pcs[k].end != end || pcs[k].stamp != stamp)
            return false;
    if (k == e->ord)
        return false;
    for (; e->ord < k && !e->rc; e->ord++) {
        const piece *pc = &pcs[e->ord];
        x->last.pieces++;
        x->last.pieces_reused++;
        x->last.bytes += pc->raw_len;
        x->last.bytes_reused += pc->raw_len;
        e->crc = (uint32_t)crc32_combine(e->crc, pc->crc, (z_off_t)pc->raw_len);
        e->total += pc->raw_len;
        e->rc = emit(e, pc->z, pc->z_len);
    }
    e->used[e->sec] = e->ord;
    return true;
}

typedef void (*put_entry_fn)(enc *e, size_t i);

/* Writes section sec, entries 0..n-1 by put, per pieces of per entries;
 * stamps: the merger's change stamp per group, or NULL. */
static void put_section(enc *e, unsigned sec, size_t n, size_t per, put_entry_fn put,
                        const uint64_t *stamps)
{
    size_t g, i;

    section(e, sec);
    for (g = 0; g * per < n && !e->rc; g++) {
        size_t lo = g * per, hi = n - lo > per ? lo + per : n;
        uint64_t stamp = stamps ? stamps[g] : 0;
        if (reuse_group(e, g, hi, stamp))
            continue;
        e->grp = g;
        e->grp_end = hi;
        e->grp_stamp = stamp;
        for (i = lo; i < hi && !e->rc; i++) {
            /* A piece is built whole in memory: bound it. */
            if (e->n >= PIECE_MAX_RAW)
                cut(e);
            put(e, i);
        }
        cut(e);
    }
}

static inline void put_bytes(enc *e, const void *p, size_t len)
{
    if (room(e, len))
        return;
    memcpy(e->buf + e->n, p, len);
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

static inline void put_varint(enc *e, uint64_t v)
{
    if (room(e, 10))
        return;
    e->n = (size_t)(w_varint(e->buf + e->n, v) - e->buf);
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

/* Room for a whole message of len bytes at the end of the piece; write it
 * with the w_* stores, then end_message() with where they stopped. NULL has
 * set e->rc. */
static uint8_t *begin_message(enc *e, size_t len)
{
    return room(e, len) ? NULL : e->buf + e->n;
}

static void end_message(enc *e, const uint8_t *end)
{
    e->n = (size_t)(end - e->buf);
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
    end_message(e, p);
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
    end_message(e, p);
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

static void put_sample_entry(enc *e, size_t i)
{
    if (e->live[i])
        put_sample(e, (uint32_t)i);
}

static void put_mapping_entry(enc *e, size_t i)
{
    if (e->map_id[i])
        put_mapping(e, (uint32_t)i);
}

static void put_location_entry(enc *e, size_t i)
{
    if (e->loc_id[i])
        put_location(e, (uint32_t)i);
}

static void put_function_entry(enc *e, size_t i)
{
    if (e->fn_id[i])
        put_function(e, (uint32_t)i);
}

static void put_string_entry(enc *e, size_t i)
{
    uint32_t len;
    const char *s;

    if (i && !e->str_id[i])
        return;
    s = pprof__mstr_at(e->m, (uint32_t)i, &len);
    put_len(e, 6, len);
    put_bytes(e, s, len);
}

static void put_profile(enc *e)
{
    const pprof_merger *m = e->m;
    size_t i;

    section(e, SEC_HEAD);
    for (i = 0; i + 1 < m->sample_types.n; i += 2)
        put_valuetype(e, 1, PPROF__AT(m->sample_types, uint32_t, i),
                      PPROF__AT(m->sample_types, uint32_t, i + 1));
    /* Every merger_add stamps its groups; without stamps, nothing is reused. */
    if (m->group_version.n * PIECE_SAMPLES < m->samples.n)
        e->stable = false;
    put_section(e, SEC_SAMPLES, m->samples.n, PIECE_SAMPLES, put_sample_entry,
                e->stable ? m->group_version.p : NULL);
    put_section(e, SEC_MAPPINGS, m->mappings.n, PIECE_MAPPINGS, put_mapping_entry, NULL);
    put_section(e, SEC_LOCATIONS, m->locations.n, PIECE_LOCATIONS, put_location_entry, NULL);
    put_section(e, SEC_FUNCTIONS, m->functions.n, PIECE_FUNCTIONS, put_function_entry, NULL);
    put_section(e, SEC_STRINGS, m->strings.n, PIECE_STRINGS, put_string_entry, NULL);
    /* The tail changes with every profile (times): a piece of its own. */
    section(e, SEC_TAIL);
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
    cut(e);
}

/* The gzip header zlib writes at level 1: no name, no time, "fastest", Unix. */
static const uint8_t gzip_header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3};

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int encoder_start(pprof_encoder *x, pprof_error *err)
{
    if (x->z_init)
        return 0;
    x->z.zalloc = pprof__zalloc;
    x->z.zfree = pprof__zfree;
    /* -MAX_WBITS: raw deflate; the gzip wrapper is written here. */
    if (deflateInit2(&x->z, Z_BEST_SPEED, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return pprof__fail(err, PPROF_ENOMEM, "out of memory starting deflate");
    x->z_init = true;
    return 0;
}

/* Forgets the pieces past the ones this encode used, so that memory follows
 * the current aggregate. */
static void encoder_trim(pprof_encoder *x, unsigned sec, size_t used)
{
    size_t i;

    for (i = used; i < x->npieces[sec]; i++) {
        pprof__free(x->pieces[sec][i].raw);
        pprof__free(x->pieces[sec][i].z);
        memset(&x->pieces[sec][i], 0, sizeof(piece));
    }
}

static bool prefix_equal(const uint32_t *old, size_t nold, const uint32_t *now, size_t nnow)
{
    return nold <= nnow && (nold == 0 || memcmp(old, now, nold * sizeof *old) == 0);
}

/*
 * Numbers the aggregate's entries, or takes x's numbering when x last
 * encoded this merger at its current shape (then nothing was renumbered).
 * Sets e->stable when the entries x numbered last time keep their numbers:
 * entries are only ever appended, so that holds unless a sample's values
 * went to or from all zero.
 */
static int number(enc *e)
{
    pprof_encoder *x = e->x;
    const pprof_merger *m = e->m;
    bool same = x->keep && x->uid == m->uid;

    if (same && x->shape == m->shape_version) {
        e->loc_id = x->ids[IDS_LOC];
        e->fn_id = x->ids[IDS_FN];
        e->map_id = x->ids[IDS_MAP];
        e->str_id = x->ids[IDS_STR];
        e->live = x->live;
        e->borrowed = e->stable = true;
        return 0;
    }
    e->loc_id = pprof__calloc(m->locations.n + 1, sizeof(uint32_t));
    e->fn_id = pprof__calloc(m->functions.n + 1, sizeof(uint32_t));
    e->map_id = pprof__calloc(m->mappings.n + 1, sizeof(uint32_t));
    e->str_id = pprof__calloc(m->strings.n + 1, sizeof(uint32_t));
    e->live = pprof__calloc(m->samples.n + 1, sizeof(bool));
    if (!e->loc_id || !e->fn_id || !e->map_id || !e->str_id || !e->live)
        return pprof__fail(e->err, PPROF_ENOMEM, "out of memory encoding the aggregate");
    renumber(e);
    e->stable = same &&
                prefix_equal(x->ids[IDS_LOC], x->nids[IDS_LOC], e->loc_id, m->locations.n) &&
                prefix_equal(x->ids[IDS_FN], x->nids[IDS_FN], e->fn_id, m->functions.n) &&
                prefix_equal(x->ids[IDS_MAP], x->nids[IDS_MAP], e->map_id, m->mappings.n) &&
                prefix_equal(x->ids[IDS_STR], x->nids[IDS_STR], e->str_id, m->strings.n);
    return 0;
}

static void free_numbering(pprof_encoder *x)
{
    unsigned k;

    for (k = 0; k < IDS_N; k++) {
        pprof__free(x->ids[k]);
        x->ids[k] = NULL;
        x->nids[k] = 0;
    }
    pprof__free(x->live);
    x->live = NULL;
}

/* After a successful encode: x keeps its numbering and where it came from. */
static void remember(pprof_encoder *x, enc *e)
{
    const pprof_merger *m = e->m;
    unsigned sec;

    for (sec = 0; sec < SEC_N; sec++)
        encoder_trim(x, sec, e->used[sec]);
    if (!e->borrowed) {
        free_numbering(x);
        x->ids[IDS_LOC] = e->loc_id;
        x->ids[IDS_FN] = e->fn_id;
        x->ids[IDS_MAP] = e->map_id;
        x->ids[IDS_STR] = e->str_id;
        x->nids[IDS_LOC] = m->locations.n;
        x->nids[IDS_FN] = m->functions.n;
        x->nids[IDS_MAP] = m->mappings.n;
        x->nids[IDS_STR] = m->strings.n;
        x->live = e->live;
        e->borrowed = true;
    }
    x->uid = m->uid;
    x->shape = m->shape_version;
}

static int encoder_write(pprof_encoder *x, const pprof_merger *m, pprof_write_cb cb, void *ctx,
                         pprof_error *err)
{
    enc e;
    int rc;

    if (!m->has_header)
        return pprof__fail(err, PPROF_EEMPTY, "no profile was added to the aggregate");
    memset(&x->last, 0, sizeof x->last);
    if ((rc = encoder_start(x, err)) != 0)
        return rc;
    memset(&e, 0, sizeof(e));
    e.m = m;
    e.x = x;
    e.cb = cb;
    e.ctx = ctx;
    e.err = err;
    rc = number(&e);
    /* Until this encode succeeds, x's pieces may not match its numbering. */
    x->uid = 0;
    if (rc || (rc = emit(&e, gzip_header, sizeof gzip_header)) != 0)
        goto cleanup;
    put_profile(&e);
    if ((rc = e.rc) != 0)
        goto cleanup;
    {
        /* An empty final block (fixed Huffman, end-of-block only), then the
         * gzip trailer: CRC-32 and length mod 2^32, little-endian. */
        uint8_t end[10] = {0x03, 0x00};
        put_le32(end + 2, e.crc);
        put_le32(end + 6, (uint32_t)e.total);
        if ((rc = emit(&e, end, sizeof end)) != 0)
            goto cleanup;
    }
    if (x->keep)
        remember(x, &e);
cleanup:
    pprof__free(e.buf);
    if (!e.borrowed) {
        pprof__free(e.live);
        pprof__free(e.str_id);
        pprof__free(e.map_id);
        pprof__free(e.fn_id);
        pprof__free(e.loc_id);
    }
    return rc;
}

pprof_encoder *pprof_encoder_new(void)
{
    pprof_encoder *x = pprof__calloc(1, sizeof *x);

    if (x)
        x->keep = true;
    return x;
}

static void encoder_release(pprof_encoder *x)
{
    unsigned sec;

    for (sec = 0; sec < SEC_N; sec++) {
        encoder_trim(x, sec, 0);
        pprof__free(x->pieces[sec]);
    }
    free_numbering(x);
    if (x->z_init)
        deflateEnd(&x->z);
    pprof__free(x->zbuf);
}

void pprof_encoder_free(pprof_encoder *x)
{
    if (!x)
        return;
    encoder_release(x);
    pprof__free(x);
}

void pprof_encoder_get_stats(const pprof_encoder *x, pprof_encoder_stats *out)
{
    *out = x->last;
}

/* Writes with x, or without remembering anything when x is NULL. */
static int write_with(pprof_encoder *x, const pprof_merger *m, pprof_write_cb cb, void *ctx,
                      pprof_error *err)
{
    pprof_encoder once;
    int rc;

    if (x)
        return encoder_write(x, m, cb, ctx, err);
    memset(&once, 0, sizeof once);
    rc = encoder_write(&once, m, cb, ctx, err);
    encoder_release(&once);
    return rc;
}

int pprof_encoder_write(pprof_encoder *x, const pprof_merger *m, pprof_write_cb cb, void *ctx,
                        pprof_error *err)
{
    return write_with(x, m, cb, ctx, err);
}

int pprof_merger_write(const pprof_merger *m, pprof_write_cb cb, void *ctx,
                       pprof_error *err)
{
    return write_with(NULL, m, cb, ctx, err);
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

static int encode_with(pprof_encoder *x, const pprof_merger *m, uint8_t **out,
                       size_t *out_len, pprof_error *err)
{
    membuf b = {NULL, 0, 0};
    int rc = write_with(x, m, on_mem_write, &b, err);

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

int pprof_encoder_encode(pprof_encoder *x, const pprof_merger *m, uint8_t **out,
                         size_t *out_len, pprof_error *err)
{
    return encode_with(x, m, out, out_len, err);
}

int pprof_merger_encode(const pprof_merger *m, uint8_t **out, size_t *out_len,
                        pprof_error *err)
{
    return encode_with(NULL, m, out, out_len, err);
}
