/*
 * decode.c: reads one pprof profile from a descriptor or a memory buffer,
 * gzip-compressed or raw, into the flat tables of internal.h.
 *
 * DESIGN
 * Input flows through one reader: a source (fd or memory), an optional zlib
 * inflater (gzip is recognised by its magic bytes 1f 8b, as Go's
 * profile.ParseData does) and a window of inflated protobuf bytes. The
 * window starts at 64 KiB and only grows when a single top-level field needs
 * more contiguous bytes than it holds, doubling as bytes actually arrive, so
 * a field that claims gigabytes but is followed by little data costs little.
 * Past ONESHOT_MAX the whole inflated file is never held: memory is the
 * window plus the tables, and every table is charged to a budget
 * (pprof_limits.max_memory).
 *
 * One exception makes the common case fast: a single gzip member of at most
 * ONESHOT_MAX (4 MiB) bytes that inflates to at most that, read from memory
 * or from a regular file, is inflated in one call by the vendored libdeflate
 * (see oneshot()): about 1.6x zlib's speed, and no window refills. It costs
 * up to two 4 MiB buffers per decode, not charged to the budget; the budget
 * is charged exactly as the streaming window would have been, so a profile
 * decodes, or is refused with the same message, whichever path it takes.
 * libdeflate is patched (vendor/libdeflate/VENDOR.md) to refuse everything
 * zlib might refuse that it would otherwise decode; whatever it refuses
 * goes to zlib, which decides and words every gzip error.
 *
 * The Profile message is walked by a small loop here rather than by one
 * pb_decode call, for three reasons: (1) a submessage is handed to nanopb as
 * a memory pb_istream_t over the window, which is much faster than nanopb
 * pulling every byte through a read callback over inflate; (2) Go's parser
 * refuses a second time_nanos (two concatenated profiles), which needs to see
 * each occurrence of a scalar field; (3) strings and unknown fields are
 * copied or skipped in bounded pieces without needing them contiguous.
 * nanopb (with every repeated field a pb_callback_t, see
 * proto/profile.options) decodes Sample, Label, Mapping, Location, Line,
 * Function and ValueType; its callbacks append to the tables and fail
 * (returning false, reason kept in the decode context) on budget overrun.
 * Every message struct is zero-initialised (the *_init_zero macros) before
 * pb_decode_ex, so PB_DECODE_NOINIT skips nanopb's per-message default pass.
 *
 * Go writes samples before the string table, so nothing is checked against
 * the string table while decoding; pprof__validate runs after the last byte.
 *
 * Concatenated gzip members are inflated one after another, like Go's
 * multistream gzip.Reader; anything after a member that is not another gzip
 * header is an error, as in Go. Threads: reentrant, safe off the loop thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "libdeflate.h"
#include "pb_decode.h"
#include "pprof/internal.h"
#include "profile.pb.h"

#define WINDOW_MIN (64u << 10)
#define INBUF_SIZE (64u << 10)
/* Largest gzip input (and inflated size) taken whole by the one-shot path. */
#define ONESHOT_MAX (4u << 20)

bool pprof__oneshot_off;
unsigned long pprof__oneshot_used;

typedef struct reader {
    int fd; /* -1 when reading memory */
    const uint8_t *mem;
    size_t mem_len, mem_pos;
    uint8_t *mem_owned; /* a regular file read whole for the one-shot path */
    bool src_eof; /* the source has no more bytes */
    uint64_t in_total; /* source bytes handed to zlib or the window */

    bool gzip;
    bool z_init;
    bool z_member_end; /* inflate finished a member; next must be a header */
    z_stream z;
    uint8_t *inbuf; /* fd + gzip only */
    size_t inbuf_len;

    uint8_t *win;
    bool win_owned;
    /* The one-shot path: win holds the whole profile; vcap is the size the
     * streaming window would have grown to, charged to the budget alike. */
    bool whole;
    size_t vcap;
    size_t win_cap, pos, end; /* unread bytes are win[pos..end) */
    uint64_t base;            /* protobuf offset of win[0] */
    bool eof;                 /* no more protobuf bytes will come */

    uint64_t max_inflated;
    pprof__budget *budget;
    pprof_error *err;
} reader;

/* ---- the reader ------------------------------------------------------- */

/* Reads more source bytes into inbuf after the unconsumed ones (fd only). */
static int src_read_fd(reader *r, uint8_t *dst, size_t cap, size_t *got)
{
    ssize_t n;

    do {
        n = read(r->fd, dst, cap);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return pprof__fail(r->err, PPROF_EIO,
                           "reading the profile failed after %llu bytes: %s",
                           (unsigned long long)r->in_total, strerror(errno));
    *got = (size_t)n;
    if (n == 0)
        r->src_eof = true;
    r->in_total += (uint64_t)n;
    return 0;
}

/* Makes sure zlib has input, keeping at least the unconsumed bytes. */
static int z_feed(reader *r)
{
    size_t got;
    int rc;

    if (r->src_eof)
        return 0;
    if (r->fd < 0) {
        size_t chunk = r->mem_len - r->mem_pos;
        if (chunk > (1u << 30))
            chunk = 1u << 30;
        /* Memory is contiguous: unconsumed bytes end where the chunk starts. */
        if (r->z.avail_in == 0)
            r->z.next_in = (Bytef *)(uintptr_t)(r->mem + r->mem_pos);
        if (chunk > (1u << 30) - r->z.avail_in)
            chunk = (1u << 30) - r->z.avail_in;
        r->z.avail_in = (uInt)(r->z.avail_in + chunk);
        r->mem_pos += chunk;
        r->in_total += chunk;
        if (r->mem_pos == r->mem_len)
            r->src_eof = true;
        return 0;
    }
    if (r->z.avail_in)
        memmove(r->inbuf, r->z.next_in, r->z.avail_in);
    rc = src_read_fd(r, r->inbuf + r->z.avail_in, INBUF_SIZE - r->z.avail_in,
                     &got);
    if (rc)
        return rc;
    r->z.next_in = r->inbuf;
    r->z.avail_in += (uInt)got;
    return 0;
}

/* After a gzip member ended: another member follows, or the input ends. */
static int z_next_member(reader *r)
{
    int rc;

    while (r->z.avail_in < 2 && !r->src_eof)
        if ((rc = z_feed(r)))
            return rc;
    if (r->z.avail_in == 0) {
        r->eof = true;
        return 0;
    }
    if (r->z.avail_in < 2 || r->z.next_in[0] != 0x1f || r->z.next_in[1] != 0x8b)
        return pprof__fail(r->err, PPROF_EGZIP,
                           "unexpected data after the gzip stream at input byte %llu",
                           (unsigned long long)(r->in_total - r->z.avail_in));
    if (inflateReset(&r->z) != Z_OK)
        return pprof__fail(r->err, PPROF_EGZIP, "gzip reset failed");
    r->z_member_end = false;
    return 0;
}

/* Appends up to room inflated or raw bytes at win[end]. */
static int produce(reader *r, size_t room)
{
    uint64_t produced = r->base + r->end;
    int zr, rc;

    if (produced >= r->max_inflated) {
        /* One byte past the cap proves the input is too big. */
        room = 1;
    } else if (room > r->max_inflated - produced + 1) {
        room = (size_t)(r->max_inflated - produced + 1);
    }
    if (!r->gzip) {
        size_t got;
        if ((rc = src_read_fd(r, r->win + r->end, room, &got)))
            return rc;
        r->end += got;
        if (got == 0)
            r->eof = true;
        goto check;
    }
    if (r->z_member_end)
        return z_next_member(r);
    if (r->z.avail_in == 0 && (rc = z_feed(r)))
        return rc;
    r->z.next_out = r->win + r->end;
    r->z.avail_out = (uInt)(room > (1u << 30) ? (1u << 30) : room);
    zr = inflate(&r->z, Z_NO_FLUSH);
    r->end = (size_t)(r->z.next_out - r->win);
    switch (zr) {
    case Z_OK:
        break;
    case Z_STREAM_END:
        r->z_member_end = true;
        break;
    case Z_BUF_ERROR:
        if (r->z.avail_in == 0 && r->src_eof)
            return pprof__fail(r->err, PPROF_EGZIP,
                               "gzip stream truncated after %llu bytes",
                               (unsigned long long)r->in_total);
        break; /* no progress this round; more input will come */
    case Z_MEM_ERROR:
        return pprof__fail(r->err, PPROF_ENOMEM, "out of memory inflating gzip");
    default:
        return pprof__fail(r->err, PPROF_EGZIP,
                           "gzip stream corrupt near input byte %llu: %s",
                           (unsigned long long)(r->in_total - r->z.avail_in),
                           r->z.msg ? r->z.msg : "bad data");
    }
check:
    if (r->base + r->end > r->max_inflated)
        return pprof__fail(r->err, PPROF_ETOOBIG,
                           "the profile inflates to more than the %llu-byte limit",
                           (unsigned long long)r->max_inflated);
    return 0;
}

/*
 * Makes at least want unread bytes contiguous at win[pos], or as many as the
 * input still has (check r->end - r->pos). The window grows only when it is
 * full of unread bytes, so its size follows the data really present.
 */
static int fill_more(reader *r, size_t want)
{
    int rc;

    if (r->whole) {
        /* Every byte is here already. Charge what the streaming window
         * would have grown to (it doubles while it is full and short of
         * want), so both paths accept and refuse the same profiles. */
        while (r->vcap < want && r->end - r->pos >= r->vcap) {
            size_t ncap = r->vcap * 2;
            if (ncap < r->vcap || !pprof__budget_fits(r->budget, ncap - r->vcap))
                return pprof__fail(r->err, PPROF_ELIMIT,
                                   "a field at byte %llu needs more than the memory limit",
                                   (unsigned long long)(r->base + r->pos));
            r->budget->used += ncap - r->vcap;
            r->vcap = ncap;
        }
        return 0;
    }
    while (r->end - r->pos < want && !r->eof) {
        if (r->end == r->win_cap) {
            if (r->pos > 0) {
                memmove(r->win, r->win + r->pos, r->end - r->pos);
                r->base += r->pos;
                r->end -= r->pos;
                r->pos = 0;
            } else {
                size_t ncap = r->win_cap * 2;
                uint8_t *nw;
                if (ncap < r->win_cap || !pprof__budget_fits(r->budget, ncap - r->win_cap))
                    return pprof__fail(r->err, PPROF_ELIMIT,
                                       "a field at byte %llu needs more than the memory limit",
                                       (unsigned long long)r->base);
                nw = pprof__realloc(r->win, ncap);
                if (!nw)
                    return pprof__fail(r->err, PPROF_ENOMEM,
                                       "out of memory buffering a %zu-byte field", want);
                r->budget->used += ncap - r->win_cap;
                r->win = nw;
                r->win_cap = ncap;
            }
        }
        if ((rc = produce(r, r->win_cap - r->end)))
            return rc;
    }
    return 0;
}

/* Most calls find the bytes already there: that test stays inline. Past
 * WINDOW_MIN, fill_more decides, so that the one-shot path charges a long
 * field as the streaming window would have grown for it. */
static inline int fill(reader *r, size_t want)
{
    if (want <= WINDOW_MIN && r->end - r->pos >= want)
        return 0;
    return fill_more(r, want);
}

/*
 * Reads the rest of a small regular file (after the two magic bytes already
 * read) into an owned buffer, and makes the reader read that memory. Leaves
 * the reader on the descriptor when the file is not a small regular file,
 * does not end where fstat said, or memory is short: zlib streams it then.
 */
static void slurp_fd(reader *r, const uint8_t magic[2])
{
    struct stat st;
    off_t pos = lseek(r->fd, 0, SEEK_CUR);
    uint8_t *buf, probe;
    size_t n, got = 0;

    if (pos < 0 || fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < pos ||
        (uint64_t)(st.st_size - pos) > ONESHOT_MAX - 2)
        return;
    n = (size_t)(st.st_size - pos) + 2;
    if (!(buf = pprof__malloc(n)))
        return;
    memcpy(buf, magic, 2);
    while (got < n - 2) {
        ssize_t k = pread(r->fd, buf + 2 + got, n - 2 - got, pos + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    /* pread leaves the offset alone, so declining costs nothing. */
    if (got != n - 2 || pread(r->fd, &probe, 1, pos + (off_t)got) != 0 ||
        lseek(r->fd, pos + (off_t)got, SEEK_SET) < 0) {
        pprof__free(buf);
        return;
    }
    r->fd = -1;
    r->mem = r->mem_owned = buf;
    r->mem_len = n;
    r->in_total = 0;
}

static pthread_once_t libdeflate_once = PTHREAD_ONCE_INIT;

/* libdeflate picks its CPU-specific decode and CRC routines on first use,
 * through plain stores: one thread makes that first use before any other. */
static void libdeflate_warm(void)
{
    static const uint8_t empty_final_stored[5] = {0x01, 0x00, 0x00, 0xff, 0xff};
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    uint8_t out[1];
    size_t got;

    (void)libdeflate_crc32(0, out, 0);
    if (d) {
        (void)libdeflate_deflate_decompress(d, empty_final_stored, sizeof(empty_final_stored),
                                            out, sizeof(out), &got);
        libdeflate_free_decompressor(d);
    }
}

uint32_t pprof__oneshot_isize(const uint8_t *in, size_t len)
{
    uint32_t isize;

    /* A header CRC (FHCRC) is left to zlib: libdeflate skips it, zlib and
     * Go check it. */
    if (len < 18 || len > ONESHOT_MAX || (in[3] & 0x02))
        return 0;
    isize = (uint32_t)in[len - 4] | (uint32_t)in[len - 3] << 8 | (uint32_t)in[len - 2] << 16 |
            (uint32_t)in[len - 1] << 24;
    return isize <= ONESHOT_MAX ? isize : 0;
}

/*
 * The one-shot path: a single gzip member whose trailer says it inflates to
 * at most ONESHOT_MAX bytes is inflated by libdeflate in one call into a
 * window of exactly that size. It declines (returns false, nothing changed)
 * whenever zlib's streaming path should decide: several members, a header
 * CRC to check (libdeflate skips it; zlib and Go check it), a trailer that
 * lies, data it does not inflate (its patches make it refuse whatever zlib
 * might). So every error message is still zlib's, and a profile is taken
 * here only when zlib would inflate it to the same bytes.
 */
static bool oneshot(reader *r)
{
    const uint8_t *in = r->mem;
    size_t len = r->mem_len, in_used = 0, out_used = 0;
    struct libdeflate_options opts = {
        .sizeof_options = sizeof(opts),
        .malloc_func = pprof__malloc,
        .free_func = pprof__free,
    };
    struct libdeflate_decompressor *d;
    enum libdeflate_result res;
    uint8_t *out;
    uint32_t isize = pprof__oneshot_off ? 0 : pprof__oneshot_isize(in, len);

    /* The whole buffer is not charged (the budget follows the streaming
     * path), but a limit too small to hold it sends the input there. */
    if (isize == 0 || isize > r->max_inflated || !pprof__budget_fits(r->budget, isize))
        return false;
    pthread_once(&libdeflate_once, libdeflate_warm);
    if (!(out = pprof__malloc(isize)))
        return false;
    if (!(d = libdeflate_alloc_decompressor_ex(&opts))) {
        pprof__free(out);
        return false;
    }
    res = libdeflate_gzip_decompress_ex(d, in, len, out, isize, &in_used, &out_used);
    libdeflate_free_decompressor(d);
    if (res != LIBDEFLATE_SUCCESS || in_used != len || out_used != isize) {
        pprof__free(out);
        return false;
    }
    __atomic_fetch_add(&pprof__oneshot_used, 1, __ATOMIC_RELAXED);
    /* A file read whole is not needed past this point. */
    pprof__free(r->mem_owned);
    r->mem_owned = NULL;
    r->mem = NULL;
    /* Charged as the streaming path's first window (the caller checked it
     * fits): the whole buffer is bounded by ONESHOT_MAX instead. */
    r->budget->used += WINDOW_MIN;
    r->whole = true;
    r->vcap = WINDOW_MIN;
    r->win = out;
    r->win_owned = true;
    r->win_cap = r->end = isize;
    r->eof = r->src_eof = true;
    r->mem_pos = r->mem_len = 0;
    r->in_total = len;
    return true;
}

static int reader_open(reader *r, int fd, const uint8_t *mem, size_t len,
                       const pprof_limits *lim, pprof__budget *budget,
                       pprof_error *err)
{
    uint8_t magic[2];
    size_t have = 0;
    int rc;

    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->mem = mem;
    r->mem_len = len;
    r->err = err;
    r->budget = budget;
    r->max_inflated = lim && lim->max_inflated ? lim->max_inflated
                                               : PPROF_DEFAULT_MAX_INFLATED;
    if (fd < 0) {
        have = len < 2 ? len : 2;
        memcpy(magic, mem, have);
    } else {
        /* The two magic bytes go to the front of the first buffer used. */
        while (have < 2 && !r->src_eof) {
            size_t got;
            if ((rc = src_read_fd(r, magic + have, 2 - have, &got)))
                return rc;
            have += got;
        }
    }
    if (have == 0 && (fd >= 0 || len == 0))
        return pprof__fail(err, PPROF_EEMPTY, "the input is empty");
    r->gzip = have == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (r->gzip && pprof__budget_fits(budget, WINDOW_MIN)) {
        if (fd >= 0)
            slurp_fd(r, magic);
        if (r->fd < 0 && oneshot(r))
            return 0;
    }

    if (fd < 0 && !r->gzip) {
        /* Raw protobuf in memory: the window is the caller's buffer. */
        if (len > r->max_inflated)
            return pprof__fail(err, PPROF_ETOOBIG,
                               "the profile is %zu bytes, more than the %llu-byte limit",
                               len, (unsigned long long)r->max_inflated);
        r->win = (uint8_t *)(uintptr_t)mem;
        r->win_cap = r->end = len;
        r->eof = r->src_eof = true;
        r->in_total = len;
        return 0;
    }
    if (!pprof__budget_fits(budget, WINDOW_MIN))
        return pprof__fail(err, PPROF_ELIMIT,
                           "the memory limit is smaller than the %u-byte read window",
                           WINDOW_MIN);
    r->win = pprof__malloc(WINDOW_MIN);
    if (!r->win)
        return pprof__fail(err, PPROF_ENOMEM, "out of memory");
    r->win_owned = true;
    r->win_cap = WINDOW_MIN;
    budget->used += WINDOW_MIN;
    if (!r->gzip) {
        memcpy(r->win, magic, have);
        r->end = have;
        if (r->src_eof)
            r->eof = true;
        return 0;
    }
    r->z.zalloc = pprof__zalloc;
    r->z.zfree = pprof__zfree;
    if (r->fd >= 0) {
        r->inbuf = pprof__malloc(INBUF_SIZE);
        if (!r->inbuf)
            return pprof__fail(err, PPROF_ENOMEM, "out of memory");
        memcpy(r->inbuf, magic, 2);
        r->z.next_in = r->inbuf;
        r->z.avail_in = 2;
    }
    /* 16 + MAX_WBITS: a gzip wrapper only (zlib's documented convention). */
    switch (inflateInit2(&r->z, 16 + MAX_WBITS)) {
    case Z_OK:
        break;
    case Z_MEM_ERROR:
        return pprof__fail(err, PPROF_ENOMEM, "out of memory starting zlib");
    default:
        return pprof__fail(err, PPROF_EGZIP, "zlib failed to start");
    }
    r->z_init = true;
    return 0;
}

static void reader_close(reader *r)
{
    if (r->z_init)
        inflateEnd(&r->z);
    pprof__free(r->inbuf);
    pprof__free(r->mem_owned);
    if (r->win_owned)
        pprof__free(r->win);
}

/* Bytes consumed, for messages: the protobuf offset of the next unread byte. */
static uint64_t reader_off(const reader *r)
{
    return r->base + r->pos;
}

/* read_varint's general case: fills the window first. */
static int read_varint_slow(reader *r, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    size_t i = r->pos;
    int rc;

    if ((rc = fill(r, 10)))
        return rc;
    i = r->pos;
    while (i < r->end && shift < 64) {
        uint8_t b = r->win[i++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            r->pos = i;
            *out = v;
            return 0;
        }
        shift += 7;
    }
    if (i == r->end)
        return pprof__fail(r->err, PPROF_EPROTO,
                           "protobuf truncated in a varint at byte %llu",
                           (unsigned long long)reader_off(r));
    return pprof__fail(r->err, PPROF_EPROTO, "varint longer than 10 bytes at byte %llu",
                       (unsigned long long)reader_off(r));
}

/* Parses a varint from [*pp, end); returns false if it is truncated or
 * longer than 10 bytes. */
static inline bool buf_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *q = *pp;
    uint64_t v = 0;

    /* Keys, lengths and most location ids fit in one or two bytes. */
    if (q < end && q[0] < 0x80) {
        *out = q[0];
        *pp = q + 1;
        return true;
    }
    if (end - q >= 2 && q[1] < 0x80) {
        *out = (uint64_t)(q[0] & 0x7f) | (uint64_t)q[1] << 7;
        *pp = q + 2;
        return true;
    }
    for (unsigned shift = 0; q < end && shift < 64; shift += 7) {
        uint8_t b = *q++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = q;
            *out = v;
            return true;
        }
    }
    return false;
}

/* Parses a varint from win[pos..end); returns 0 or PPROF_EPROTO. */
static inline int read_varint(reader *r, uint64_t *out)
{
    const uint8_t *q = r->win + r->pos;

    /* With 10 bytes in the window no fill can be needed. */
    if (r->end - r->pos >= 10 && buf_varint(&q, r->win + r->end, out)) {
        r->pos = (size_t)(q - r->win);
        return 0;
    }
    return read_varint_slow(r, out);
}

/* Consumes n bytes; fn (if set) receives them in pieces. */
static int consume(reader *r, uint64_t n,
                   int (*fn)(void *ctx, const uint8_t *p, size_t len), void *ctx)
{
    uint64_t start = reader_off(r);
    int rc;

    while (n > 0) {
        size_t take;
        if ((rc = fill(r, 1)))
            return rc;
        if (r->pos == r->end)
            return pprof__fail(r->err, PPROF_EPROTO,
                               "protobuf truncated: a field at byte %llu needs %llu more bytes",
                               (unsigned long long)start, (unsigned long long)n);
        take = r->end - r->pos;
        if (take > n)
            take = (size_t)n;
        if (fn && (rc = fn(ctx, r->win + r->pos, take)))
            return rc;
        r->pos += take;
        n -= take;
    }
    return 0;
}

/* ---- nanopb callbacks -------------------------------------------------- */

typedef struct dctx {
    pprof_profile *p;
    int rc; /* why a callback failed: PPROF_ENOMEM or PPROF_ELIMIT */
} dctx;

/* Appends one element of size bytes to v and returns it to be filled, or
 * NULL with c->rc set when the table cannot grow. */
static inline void *push_slot(dctx *c, pprof__vec *v, size_t size)
{
    int rc;

    if (v->n == v->cap && (rc = pprof__vec_grow(v, size, 1, &c->p->budget))) {
        c->rc = rc;
        return NULL;
    }
    return (char *)v->p + v->n++ * size;
}

static inline bool push(dctx *c, pprof__vec *v, size_t size, const void *elem)
{
    void *d = push_slot(c, v, size);

    if (d)
        memcpy(d, elem, size);
    return d != NULL;
}

/*
 * push() of a Location, field by field: GCC makes a copy of 33 bytes or
 * more (a Location is 40) a rep movs, whose start-up costs more than the
 * copy itself (perf: 7% of decode's samples stood right after it).
 */
static inline bool push_location(dctx *c, const pprof__location *loc)
{
    pprof__location *d = push_slot(c, &c->p->locations, sizeof(*d));

    if (!d)
        return false;
    d->id = loc->id;
    d->mapping_id = loc->mapping_id;
    d->address = loc->address;
    d->mapping = loc->mapping;
    d->line_off = loc->line_off;
    d->nline = loc->nline;
    d->is_folded = loc->is_folded;
    return true;
}

static bool on_locid(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    dctx *c = *arg;
    uint64_t v;

    (void)f;
    while (s->bytes_left) {
        if (!pb_decode_varint(s, &v))
            return false;
        if (!push(c, &c->p->locids, sizeof(v), &v))
            return false;
    }
    return true;
}

static bool on_value(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    dctx *c = *arg;
    uint64_t v;
    int64_t sv;

    (void)f;
    while (s->bytes_left) {
        if (!pb_decode_varint(s, &v))
            return false;
        sv = (int64_t)v;
        if (!push(c, &c->p->values, sizeof(sv), &sv))
            return false;
    }
    return true;
}

static bool on_label(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    dctx *c = *arg;
    perftools_profiles_Label m = perftools_profiles_Label_init_zero;
    pprof__label l;

    (void)f;
    if (!pb_decode_ex(s, perftools_profiles_Label_fields, &m, PB_DECODE_NOINIT))
        return false;
    l.key = m.key;
    l.str = m.str;
    l.num = m.num;
    l.num_unit = m.num_unit;
    return push(c, &c->p->labels, sizeof(l), &l);
}

static bool on_line(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    dctx *c = *arg;
    perftools_profiles_Line m = perftools_profiles_Line_init_zero;
    pprof__line l;

    (void)f;
    if (!pb_decode_ex(s, perftools_profiles_Line_fields, &m, PB_DECODE_NOINIT))
        return false;
    l.function_id = m.function_id;
    l.line = m.line;
    l.function = PPROF__NONE;
    return push(c, &c->p->lines, sizeof(l), &l);
}

/* ---- Sample fast path ---------------------------------------------------- */

static int table_full(reader *r, int rc, int field, uint64_t off);

static inline bool push_u64(dctx *c, pprof__vec *v, uint64_t x)
{
    uint64_t *d = push_slot(c, v, sizeof x);

    if (d)
        *d = x;
    return d != NULL;
}

/*
 * Samples are most of a CPU profile, and nanopb's generic field iterator
 * and per-byte stream reads were the largest cost of decoding one (perf,
 * callgrind: docs/performance.md). This decodes the shape Go writes --
 * packed or unpacked location ids and values, nothing else -- straight
 * from the buffer. Anything else (labels, unknown fields, a malformed or
 * truncated varint) rolls back and returns 1 so nanopb decodes the message
 * as before, with its error messages. Returns 0 when the sample was
 * decoded, 1 to fall back, or a negative code when a table is full.
 */
static int sample_fast(reader *r, pprof_profile *p, dctx *c, const uint8_t *buf, size_t len,
                       uint64_t off)
{
    const uint8_t *q = buf, *end = buf + len;
    size_t loc0 = p->locids.n, val0 = p->values.n;
    pprof__sample smp;

    while (q < end) {
        uint64_t key, v, n;
        if (!buf_varint(&q, end, &key))
            goto fallback;
        uint64_t tag = key >> 3, wt = key & 7;
        pprof__vec *vec = tag == 1 ? &p->locids : tag == 2 ? &p->values : NULL;
        if (vec == NULL)
            goto fallback;
        if (wt == PB_WT_VARINT) {
            if (!buf_varint(&q, end, &v))
                goto fallback;
            if (!push_u64(c, vec, v))
                return table_full(r, c->rc, perftools_profiles_Profile_sample_tag, off);
            continue;
        }
        if (wt != PB_WT_STRING || !buf_varint(&q, end, &n) || n > (uint64_t)(end - q))
            goto fallback;
        const uint8_t *e = q + n;
        if (n > 0 && vec->cap - vec->n >= n) {
            /* Room for one id per byte, the most a run can hold: the run
             * goes through locals, with no check or reload per id. (An
             * empty run may meet a table not allocated yet.) */
            uint64_t *dst = (uint64_t *)vec->p + vec->n;
            size_t k = 0;
            while (q < e) {
                if (!buf_varint(&q, e, &v))
                    goto fallback;
                dst[k++] = v;
            }
            vec->n += k;
            continue;
        }
        while (q < e) {
            if (!buf_varint(&q, e, &v))
                goto fallback;
            if (!push_u64(c, vec, v))
                return table_full(r, c->rc, perftools_profiles_Profile_sample_tag, off);
        }
    }
    if (p->locids.n > UINT32_MAX || p->values.n > UINT32_MAX)
        return table_full(r, PPROF_ELIMIT, perftools_profiles_Profile_sample_tag, off);
    smp.loc_off = (uint32_t)loc0;
    smp.val_off = (uint32_t)val0;
    smp.label_off = (uint32_t)p->labels.n;
    smp.nloc = (uint32_t)(p->locids.n - loc0);
    smp.nval = (uint32_t)(p->values.n - val0);
    smp.nlabel = 0;
    if (!push(c, &p->samples, sizeof(smp), &smp))
        return table_full(r, c->rc, perftools_profiles_Profile_sample_tag, off);
    return 0;

fallback:
    p->locids.n = loc0;
    p->values.n = val0;
    return 1;
}

/* Decodes one Line message from [q, e) into *l; false to fall back. */
static bool line_fast(const uint8_t *q, const uint8_t *e, pprof__line *l)
{
    l->function_id = 0;
    l->line = 0;
    l->function = PPROF__NONE;
    while (q < e) {
        uint64_t key, v;
        if (!buf_varint(&q, e, &key) || (key & 7) != PB_WT_VARINT || !buf_varint(&q, e, &v))
            return false;
        if (key >> 3 == 1)
            l->function_id = v;
        else if (key >> 3 == 2)
            l->line = (int64_t)v;
        else
            return false;
    }
    return true;
}

/*
 * The same for Location, the next most frequent message: id, mapping id,
 * address, is_folded and Line submessages, as Go writes them. Anything
 * else rolls back and returns 1 for nanopb. Returns 0, 1 or a negative code.
 */
static int location_fast(reader *r, pprof_profile *p, dctx *c, const uint8_t *buf, size_t len,
                         uint64_t off)
{
    const uint8_t *q = buf, *end = buf + len;
    size_t line0 = p->lines.n;
    pprof__location loc = {0};

    while (q < end) {
        uint64_t key, v;
        if (!buf_varint(&q, end, &key) || !buf_varint(&q, end, &v))
            goto fallback;
        switch (key) {
        case (1 << 3) | PB_WT_VARINT: loc.id = v; break;
        case (2 << 3) | PB_WT_VARINT: loc.mapping_id = v; break;
        case (3 << 3) | PB_WT_VARINT: loc.address = v; break;
        case (5 << 3) | PB_WT_VARINT:
            if (v > 1)
                goto fallback;
            loc.is_folded = v == 1;
            break;
        case (4 << 3) | PB_WT_STRING: {
            pprof__line l;
            if (v > (uint64_t)(end - q) || !line_fast(q, q + v, &l))
                goto fallback;
            q += v;
            if (!push(c, &p->lines, sizeof(l), &l))
                return table_full(r, c->rc, perftools_profiles_Profile_location_tag, off);
            break;
        }
        default:
            goto fallback;
        }
    }
    if (p->lines.n > UINT32_MAX)
        return table_full(r, PPROF_ELIMIT, perftools_profiles_Profile_location_tag, off);
    loc.line_off = (uint32_t)line0;
    loc.nline = (uint32_t)(p->lines.n - line0);
    loc.mapping = PPROF__NONE;
    if (!push_location(c, &loc))
        return table_full(r, c->rc, perftools_profiles_Profile_location_tag, off);
    return 0;

fallback:
    p->lines.n = line0;
    return 1;
}

/*
 * The same for Function (id, name, system_name, filename, start_line, all
 * varints): one per function, so a few hundred per CPU profile, each of
 * which cost nanopb's field iterator about 1,700 instructions. A 10-byte
 * varint falls back too, so nanopb's overflow check still words it.
 * Returns 0 when decoded, 1 to fall back, or a negative code.
 */
static int function_fast(reader *r, pprof_profile *p, dctx *c, const uint8_t *buf, size_t len,
                         uint64_t off)
{
    const uint8_t *q = buf, *end = buf + len;
    pprof__function fn = {0};

    while (q < end) {
        uint64_t key, v;
        const uint8_t *vstart;
        if (!buf_varint(&q, end, &key))
            return 1;
        vstart = q;
        if (!buf_varint(&q, end, &v) || q - vstart >= 10)
            return 1;
        switch (key) {
        case (1 << 3) | PB_WT_VARINT: fn.id = v; break;
        case (2 << 3) | PB_WT_VARINT: fn.name = (int64_t)v; break;
        case (3 << 3) | PB_WT_VARINT: fn.system_name = (int64_t)v; break;
        case (4 << 3) | PB_WT_VARINT: fn.filename = (int64_t)v; break;
        case (5 << 3) | PB_WT_VARINT: fn.start_line = (int64_t)v; break;
        default:
            return 1;
        }
    }
    if (!push(c, &p->functions, sizeof(fn), &fn))
        return table_full(r, c->rc, perftools_profiles_Profile_function_tag, off);
    return 0;
}

/* ---- the Profile message ---------------------------------------------- */

static const char *const field_names[] = {
    "", "sample_type", "sample", "mapping", "location", "function",
    "string_table", "drop_frames", "keep_frames", "time_nanos",
    "duration_nanos", "period_type", "period", "comment", "default_sample_type",
};

static int nanopb_fail(reader *r, dctx *c, pb_istream_t *s, int field,
                       uint64_t off)
{
    if (c->rc)
        return pprof__fail(r->err, c->rc,
                           c->rc == PPROF_ENOMEM ? "out of memory decoding %s at byte %llu"
                                                 : "%s at byte %llu passes the memory limit",
                           field_names[field], (unsigned long long)off);
    return pprof__fail(r->err, PPROF_EPROTO, "malformed %s at byte %llu: %s",
                       field_names[field], (unsigned long long)off, PB_GET_ERROR(s));
}

static int table_full(reader *r, int rc, int field, uint64_t off)
{
    return pprof__fail(r->err, rc,
                       rc == PPROF_ENOMEM ? "out of memory decoding %s at byte %llu"
                                          : "%s at byte %llu passes the memory limit",
                       field_names[field], (unsigned long long)off);
}

/* Decodes one length-delimited submessage sitting whole in the window. */
static int decode_message(reader *r, pprof_profile *p, int field,
                          const uint8_t *buf, size_t len, uint64_t off)
{
    pb_istream_t s = pb_istream_from_buffer(buf, len);
    dctx c = {p, 0};
    int rc = 0;

    switch (field) {
    case perftools_profiles_Profile_sample_type_tag:
    case perftools_profiles_Profile_period_type_tag: {
        perftools_profiles_ValueType m = perftools_profiles_ValueType_init_zero;
        pprof__valuetype vt;
        if (!pb_decode_ex(&s, perftools_profiles_ValueType_fields, &m, PB_DECODE_NOINIT))
            return nanopb_fail(r, &c, &s, field, off);
        vt.type = m.type;
        vt.unit = m.unit;
        if (field == perftools_profiles_Profile_period_type_tag) {
            p->period_type = vt;
            p->has_period_type = true;
        } else if (!push(&c, &p->sample_types, sizeof(vt), &vt)) {
            return table_full(r, c.rc, field, off);
        }
        return 0;
    }
    case perftools_profiles_Profile_sample_tag: {
        perftools_profiles_Sample m = perftools_profiles_Sample_init_zero;
        pprof__sample smp;
        if ((rc = sample_fast(r, p, &c, buf, len, off)) <= 0)
            return rc;
        /* Not the common shape: nanopb decodes it (and words any error). */
        rc = 0;
        m.location_id.funcs.decode = on_locid;
        m.location_id.arg = &c;
        m.value.funcs.decode = on_value;
        m.value.arg = &c;
        m.label.funcs.decode = on_label;
        m.label.arg = &c;
        smp.loc_off = (uint32_t)p->locids.n;
        smp.val_off = (uint32_t)p->values.n;
        smp.label_off = (uint32_t)p->labels.n;
        if (!pb_decode_ex(&s, perftools_profiles_Sample_fields, &m, PB_DECODE_NOINIT))
            return nanopb_fail(r, &c, &s, field, off);
        if (p->locids.n > UINT32_MAX || p->values.n > UINT32_MAX ||
            p->labels.n > UINT32_MAX)
            return table_full(r, PPROF_ELIMIT, field, off);
        smp.nloc = (uint32_t)p->locids.n - smp.loc_off;
        smp.nval = (uint32_t)p->values.n - smp.val_off;
        smp.nlabel = (uint32_t)p->labels.n - smp.label_off;
        if (!push(&c, &p->samples, sizeof(smp), &smp))
            rc = table_full(r, c.rc, field, off);
        return rc;
    }
    case perftools_profiles_Profile_mapping_tag: {
        perftools_profiles_Mapping m = perftools_profiles_Mapping_init_zero;
        pprof__mapping mp;
        if (!pb_decode_ex(&s, perftools_profiles_Mapping_fields, &m, PB_DECODE_NOINIT))
            return nanopb_fail(r, &c, &s, field, off);
        mp.id = m.id;
        mp.start = m.memory_start;
        mp.limit = m.memory_limit;
        mp.offset = m.file_offset;
        mp.filename = m.filename;
        mp.build_id = m.build_id;
        mp.flags = (uint8_t)((m.has_functions ? PPROF__MAP_FUNCTIONS : 0) |
                             (m.has_filenames ? PPROF__MAP_FILENAMES : 0) |
                             (m.has_line_numbers ? PPROF__MAP_LINES : 0) |
                             (m.has_inline_frames ? PPROF__MAP_INLINE : 0));
        if (!push(&c, &p->mappings, sizeof(mp), &mp))
            rc = table_full(r, c.rc, field, off);
        return rc;
    }
    case perftools_profiles_Profile_location_tag: {
        perftools_profiles_Location m = perftools_profiles_Location_init_zero;
        pprof__location loc;
        if ((rc = location_fast(r, p, &c, buf, len, off)) <= 0)
            return rc;
        rc = 0; /* not the common shape: nanopb decodes it */
        m.line.funcs.decode = on_line;
        m.line.arg = &c;
        loc.line_off = (uint32_t)p->lines.n;
        if (!pb_decode_ex(&s, perftools_profiles_Location_fields, &m, PB_DECODE_NOINIT))
            return nanopb_fail(r, &c, &s, field, off);
        if (p->lines.n > UINT32_MAX)
            return table_full(r, PPROF_ELIMIT, field, off);
        loc.nline = (uint32_t)p->lines.n - loc.line_off;
        loc.id = m.id;
        loc.mapping_id = m.mapping_id;
        loc.address = m.address;
        loc.is_folded = m.is_folded;
        loc.mapping = PPROF__NONE;
        if (!push_location(&c, &loc))
            rc = table_full(r, c.rc, field, off);
        return rc;
    }
    case perftools_profiles_Profile_function_tag: {
        perftools_profiles_Function m = perftools_profiles_Function_init_zero;
        pprof__function fn;
        if ((rc = function_fast(r, p, &c, buf, len, off)) <= 0)
            return rc;
        rc = 0; /* not the common shape: nanopb decodes it */
        if (!pb_decode_ex(&s, perftools_profiles_Function_fields, &m, PB_DECODE_NOINIT))
            return nanopb_fail(r, &c, &s, field, off);
        fn.id = m.id;
        fn.name = m.name;
        fn.system_name = m.system_name;
        fn.filename = m.filename;
        fn.start_line = m.start_line;
        if (!push(&c, &p->functions, sizeof(fn), &fn))
            rc = table_full(r, c.rc, field, off);
        return rc;
    }
    case perftools_profiles_Profile_comment_tag:
        /* Packed comment indices. */
        while (s.bytes_left) {
            uint64_t v;
            if (!pb_decode_varint(&s, &v))
                return nanopb_fail(r, &c, &s, field, off);
            if (!push(&c, &p->comments, sizeof(v), &v))
                return table_full(r, c.rc, field, off);
        }
        return 0;
    }
    return 0;
}

static int append_bytes(void *ctx, const uint8_t *b, size_t n)
{
    pprof_profile *p = ctx;
    int rc;

    if (n == 0)
        return 0;
    if ((rc = pprof__vec_grow(&p->strbytes, 1, n, &p->budget)))
        return rc;
    memcpy((char *)p->strbytes.p + p->strbytes.n, b, n);
    p->strbytes.n += n;
    return 0;
}

static int decode_string(reader *r, pprof_profile *p, uint64_t len, uint64_t off)
{
    pprof__strref ref;
    int rc;

    if (p->strbytes.n + len > UINT32_MAX)
        return table_full(r, PPROF_ELIMIT, perftools_profiles_Profile_string_table_tag, off);
    ref.off = (uint32_t)p->strbytes.n;
    ref.len = (uint32_t)len;
    rc = consume(r, len, append_bytes, p);
    if (rc == PPROF_ENOMEM || rc == PPROF_ELIMIT)
        return table_full(r, rc, perftools_profiles_Profile_string_table_tag, off);
    if (rc)
        return rc;
    if ((rc = pprof__vec_grow(&p->strings, sizeof(ref), 1, &p->budget)))
        return table_full(r, rc, perftools_profiles_Profile_string_table_tag, off);
    PPROF__AT(p->strings, pprof__strref, p->strings.n++) = ref;
    return 0;
}

static int scalar_field(reader *r, pprof_profile *p, uint32_t field, uint64_t v,
                        uint64_t off)
{
    int64_t sv = (int64_t)v;

    switch (field) {
    case perftools_profiles_Profile_drop_frames_tag: p->drop_frames = sv; break;
    case perftools_profiles_Profile_keep_frames_tag: p->keep_frames = sv; break;
    case perftools_profiles_Profile_time_nanos_tag:
        /* Go's decoder: a second time_nanos means two profiles were
         * concatenated ("concatenated profiles detected"). */
        if (p->time_nanos != 0)
            return pprof__fail(r->err, PPROF_EINVALID,
                               "time_nanos appears twice (at byte %llu): "
                               "the input holds concatenated profiles",
                               (unsigned long long)off);
        p->time_nanos = sv;
        break;
    case perftools_profiles_Profile_duration_nanos_tag: p->duration_nanos = sv; break;
    case perftools_profiles_Profile_period_tag: p->period = sv; break;
    case perftools_profiles_Profile_default_sample_type_tag:
        p->default_sample_type = sv;
        break;
    case perftools_profiles_Profile_comment_tag: {
        int rc = pprof__vec_grow(&p->comments, sizeof(sv), 1, &p->budget);
        if (rc)
            return table_full(r, rc, (int)field, off);
        PPROF__AT(p->comments, int64_t, p->comments.n++) = sv;
        break;
    }
    }
    return 0;
}

/* Wire type each known Profile field must use (packed comment may be 2). */
static int expected_wire(uint32_t field)
{
    switch (field) {
    case 1: case 2: case 3: case 4: case 5: case 6: case 11:
        return PB_WT_STRING;
    default:
        return PB_WT_VARINT;
    }
}

static int decode_profile(reader *r, pprof_profile *p)
{
    uint64_t tag, len, v, off;
    uint32_t field;
    int wt, rc;

    for (;;) {
        if ((rc = fill(r, 20)))
            return rc;
        if (r->pos == r->end)
            return 0;
        off = reader_off(r);
        if ((rc = read_varint(r, &tag)))
            return rc;
        if (tag >> 3 == 0 || tag >> 3 > UINT32_MAX)
            return pprof__fail(r->err, PPROF_EPROTO,
                               "invalid field number %llu at byte %llu",
                               (unsigned long long)(tag >> 3), (unsigned long long)off);
        field = (uint32_t)(tag >> 3);
        wt = (int)(tag & 7);
        if (field <= 14 && wt != expected_wire(field) &&
            !(field == perftools_profiles_Profile_comment_tag && wt == PB_WT_STRING))
            return pprof__fail(r->err, PPROF_EPROTO,
                               "field %s at byte %llu has wire type %d, expected %d",
                               field_names[field], (unsigned long long)off, wt,
                               expected_wire(field));
        switch (wt) {
        case PB_WT_VARINT:
            if ((rc = read_varint(r, &v)))
                return rc;
            if ((rc = scalar_field(r, p, field, v, off)))
                return rc;
            break;
        case PB_WT_64BIT:
            if ((rc = consume(r, 8, NULL, NULL)))
                return rc;
            break;
        case PB_WT_32BIT:
            if ((rc = consume(r, 4, NULL, NULL)))
                return rc;
            break;
        case PB_WT_STRING:
            if ((rc = read_varint(r, &len)))
                return rc;
            if (len > r->max_inflated)
                return pprof__fail(r->err, PPROF_ETOOBIG,
                                   "field %u at byte %llu claims %llu bytes, more than the %llu-byte limit",
                                   field, (unsigned long long)off, (unsigned long long)len,
                                   (unsigned long long)r->max_inflated);
            if (field == perftools_profiles_Profile_string_table_tag) {
                if ((rc = decode_string(r, p, len, off)))
                    return rc;
            } else if (field > 14 || field == 7 || field == 8 || field == 9 ||
                       field == 10 || field == 12 || field == 14) {
                if ((rc = consume(r, len, NULL, NULL)))
                    return rc;
            } else {
                if ((rc = fill(r, (size_t)len)))
                    return rc;
                if (r->end - r->pos < len)
                    return pprof__fail(r->err, PPROF_EPROTO,
                                       "protobuf truncated: %s at byte %llu needs %llu bytes, only %zu remain",
                                       field_names[field], (unsigned long long)off,
                                       (unsigned long long)len, r->end - r->pos);
                rc = decode_message(r, p, (int)field, r->win + r->pos, (size_t)len, off);
                if (rc)
                    return rc;
                r->pos += (size_t)len;
            }
            break;
        default:
            return pprof__fail(r->err, PPROF_EPROTO,
                               "unsupported wire type %d at byte %llu", wt,
                               (unsigned long long)off);
        }
    }
}

/* ---- public entry points ------------------------------------------------ */

/* Every table of a profile, with its element size. */
static const struct {
    size_t off, size;
} tables[] = {
    {offsetof(pprof_profile, sample_types), sizeof(pprof__valuetype)},
    {offsetof(pprof_profile, samples), sizeof(pprof__sample)},
    {offsetof(pprof_profile, mappings), sizeof(pprof__mapping)},
    {offsetof(pprof_profile, locations), sizeof(pprof__location)},
    {offsetof(pprof_profile, functions), sizeof(pprof__function)},
    {offsetof(pprof_profile, strings), sizeof(pprof__strref)},
    {offsetof(pprof_profile, comments), sizeof(int64_t)},
    {offsetof(pprof_profile, locids), sizeof(uint64_t)},
    {offsetof(pprof_profile, values), sizeof(int64_t)},
    {offsetof(pprof_profile, labels), sizeof(pprof__label)},
    {offsetof(pprof_profile, lines), sizeof(pprof__line)},
    {offsetof(pprof_profile, strbytes), 1},
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))
/* A table added to pprof_profile but not to tables[] would leak on reuse. */
_Static_assert(offsetof(pprof_profile, sample_types) == 0 &&
                   offsetof(pprof_profile, drop_frames) == NTABLES * sizeof(pprof__vec),
               "tables[] must list every pprof__vec of pprof_profile");

static pprof__vec *table(pprof_profile *p, size_t i)
{
    return (pprof__vec *)(void *)((char *)p + tables[i].off);
}

static const pprof__vec *table_c(const pprof_profile *p, size_t i)
{
    return (const pprof__vec *)(const void *)((const char *)p + tables[i].off);
}

void pprof_profile_free(pprof_profile *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < NTABLES; i++)
        pprof__vec_free(table(p, i));
    pprof__free(p);
}

size_t pprof_profile_memory(const pprof_profile *p)
{
    size_t total = 0;

    if (!p)
        return 0;
    for (size_t i = 0; i < NTABLES; i++)
        total += table_c(p, i)->room * tables[i].size;
    return total;
}

/* An empty profile: spare's memory emptied, or a new one. The tables come
 * first in the struct (asserted above): the scalars after them are zeroed. */
static pprof_profile *profile_start(pprof_profile *spare)
{
    const size_t scalars = offsetof(pprof_profile, drop_frames);

    if (!spare)
        return pprof__calloc(1, sizeof(*spare));
    for (size_t i = 0; i < NTABLES; i++)
        pprof__vec_clear(table(spare, i));
    memset((char *)spare + scalars, 0, sizeof(*spare) - scalars);
    return spare;
}

/*
 * Gives back what a reused table holds beyond four times what this profile
 * needed, so a chain of reuses holds a bounded multiple of the current
 * profile's tables, not the largest of each table ever decoded. A failed
 * shrink only keeps the memory, which stays correct.
 */
static void trim(pprof_profile *p)
{
    for (size_t i = 0; i < NTABLES; i++) {
        pprof__vec *v = table(p, i);
        if (v->room / 4 <= v->cap)
            continue;
        if (v->cap == 0) {
            pprof__vec_free(v);
            continue;
        }
        void *np = pprof__realloc(v->p, v->cap * tables[i].size);
        if (np) {
            v->p = np;
            v->room = v->cap;
        }
    }
}

static int decode(int fd, const void *data, size_t len, const pprof_limits *lim,
                  pprof_profile *spare, pprof_profile **out, pprof_error *err)
{
    pprof_profile *p;
    reader r;
    int rc;

    *out = NULL;
    p = profile_start(spare);
    if (!p)
        return pprof__fail(err, PPROF_ENOMEM, "out of memory");
    p->budget.limit = lim && lim->max_memory ? lim->max_memory : PPROF_DEFAULT_MAX_MEMORY;
    if ((rc = reader_open(&r, fd, data, len, lim, &p->budget, err)))
        goto cleanup;
    if ((rc = decode_profile(&r, p)))
        goto cleanup;
    p->inflated = reader_off(&r);
    if (p->inflated == 0) {
        rc = pprof__fail(err, PPROF_EEMPTY, "the gzip stream inflates to no bytes");
        goto cleanup;
    }
    if ((rc = pprof__validate(p, err)))
        goto cleanup;
    if (spare)
        trim(p);
    *out = p;
    p = NULL;
cleanup:
    reader_close(&r);
    pprof_profile_free(p);
    return rc;
}

int pprof_decode_mem(const void *data, size_t len, const pprof_limits *lim,
                     pprof_profile **out, pprof_error *err)
{
    return pprof_decode_mem_reuse(data, len, lim, NULL, out, err);
}

int pprof_decode_mem_reuse(const void *data, size_t len, const pprof_limits *lim,
                           pprof_profile *spare, pprof_profile **out, pprof_error *err)
{
    if (!data)
        len = 0;
    return decode(-1, data ? data : "", len, lim, spare, out, err);
}

int pprof_decode_fd(int fd, const pprof_limits *lim, pprof_profile **out,
                    pprof_error *err)
{
    return pprof_decode_fd_reuse(fd, lim, NULL, out, err);
}

int pprof_decode_fd_reuse(int fd, const pprof_limits *lim, pprof_profile *spare,
                          pprof_profile **out, pprof_error *err)
{
    if (fd < 0) {
        *out = NULL;
        pprof_profile_free(spare);
        return pprof__fail(err, PPROF_EIO, "invalid file descriptor %d", fd);
    }
    return decode(fd, NULL, 0, lim, spare, out, err);
}
