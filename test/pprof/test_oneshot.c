/*
 * test_oneshot.c: decode.c's one-shot path (a small gzip member inflated in
 * one call by the vendored libdeflate) against zlib's streaming path, and the
 * patches that keep libdeflate from accepting what zlib and Go refuse.
 *
 * The crafted streams below are ones upstream libdeflate 1.23 inflates (to
 * the bytes whose CRC-32 and size their trailers carry) while zlib refuses
 * them. Without the patches in vendor/libdeflate/VENDOR.md the decoder would
 * take libdeflate's reading of them, and these tests would see a protobuf
 * error or a profile instead of zlib's gzip error.
 */
#include <fcntl.h>

#include "libdeflate.h"
#include "pprof/helpers.h"

/* ---- a DEFLATE bit writer ------------------------------------------------ */

typedef struct bits {
    uint8_t buf[70000];
    size_t n;      /* whole bytes written */
    uint32_t acc;  /* pending bits, LSB first */
    unsigned nacc;
} bits;

static void put_bits(bits *b, uint32_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        b->acc |= ((v >> i) & 1u) << b->nacc;
        if (++b->nacc == 8) {
            assert_true(b->n < sizeof(b->buf));
            b->buf[b->n++] = (uint8_t)b->acc;
            b->acc = 0;
            b->nacc = 0;
        }
    }
}

static void flush_bits(bits *b)
{
    if (b->nacc)
        put_bits(b, 0, 8 - b->nacc);
}

/* Huffman codewords go most significant bit first. */
static void put_code(bits *b, uint32_t code, unsigned len)
{
    while (len--)
        put_bits(b, (code >> len) & 1u, 1);
}

/* Canonical codes for lens (RFC 1951, 3.2.2). */
static void canonical(const uint8_t *lens, unsigned n, uint32_t *codes)
{
    unsigned count[16] = {0};
    uint32_t next[16] = {0}, code = 0;

    for (unsigned i = 0; i < n; i++)
        count[lens[i]]++;
    count[0] = 0;
    for (unsigned len = 1; len < 16; len++) {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    for (unsigned i = 0; i < n; i++)
        codes[i] = lens[i] ? next[lens[i]]++ : 0;
}

typedef struct dyn {
    uint8_t lit_lens[288], dist_lens[32];
    unsigned nlit, ndist; /* as written in HLIT and HDIST, even if invalid */
    uint32_t lit[288], dist[32];
} dyn;

/* Writes a dynamic block header for d. Code lengths 0-9 are sent one by
 * one with a precode that gives lengths 0, 1, 2, 8 and 9 codewords. */
static void put_dynamic_header(bits *b, dyn *d, bool final)
{
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                                      11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t pre_lens[19] = {0};
    uint32_t pre[19];

    pre_lens[0] = 2; /* 1/4 + 1/4 + 1/4 + 1/8 + 1/8 = 1 */
    pre_lens[1] = 2;
    pre_lens[2] = 2;
    pre_lens[8] = 3;
    pre_lens[9] = 3;
    canonical(pre_lens, 19, pre);
    canonical(d->lit_lens, d->nlit, d->lit);
    canonical(d->dist_lens, d->ndist, d->dist);
    put_bits(b, final, 1);
    put_bits(b, 2, 2);
    put_bits(b, d->nlit - 257, 5);
    put_bits(b, d->ndist - 1, 5);
    put_bits(b, 18 - 4, 4); /* 18 precode lengths: up to symbol 1 */
    for (unsigned i = 0; i < 18; i++)
        put_bits(b, pre_lens[order[i]], 3);
    for (unsigned i = 0; i < d->nlit; i++)
        put_code(b, pre[d->lit_lens[i]], pre_lens[d->lit_lens[i]]);
    for (unsigned i = 0; i < d->ndist; i++)
        put_code(b, pre[d->dist_lens[i]], pre_lens[d->dist_lens[i]]);
}

/* A gzip member around raw deflate data, whose trailer describes want
 * (what upstream libdeflate inflates the data to). Returns owned. */
static uint8_t *gzip_member(const bits *b, const uint8_t *want, size_t want_len, size_t *len)
{
    static const uint8_t head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    uint32_t crc = (uint32_t)crc32(0, want, (uInt)want_len);
    uint8_t *out = malloc(10 + b->n + 8);

    memcpy(out, head, 10);
    memcpy(out + 10, b->buf, b->n);
    for (int i = 0; i < 4; i++) {
        out[10 + b->n + i] = (uint8_t)(crc >> (8 * i));
        out[14 + b->n + i] = (uint8_t)((uint32_t)want_len >> (8 * i));
    }
    *len = 10 + b->n + 8;
    return out;
}

/* Raw deflate: the vendored libdeflate and zlib both refuse it. */
static void assert_both_refuse(const bits *b, const char *zlib_msg)
{
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    static uint8_t out[1 << 17];
    size_t got = 0;
    z_stream z;

    assert_non_null(d);
    assert_int_equal(libdeflate_deflate_decompress(d, b->buf, b->n, out, sizeof(out), &got),
                     LIBDEFLATE_BAD_DATA);
    libdeflate_free_decompressor(d);

    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, -15), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)b->buf;
    z.avail_in = (uInt)b->n;
    z.next_out = out;
    z.avail_out = sizeof(out);
    assert_int_equal(inflate(&z, Z_FINISH), Z_DATA_ERROR);
    assert_string_equal(z.msg, zlib_msg);
    inflateEnd(&z);
}

/* The gzip member is refused by the decoder with zlib's words. */
static void assert_decode_refuses(const bits *b, const uint8_t *want, size_t want_len,
                                  const char *zlib_msg)
{
    size_t len;
    uint8_t *gz = gzip_member(b, want, want_len, &len);
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    unsigned long used = pprof__oneshot_used;

    assert_int_equal(pprof_decode_mem(gz, len, NULL, &p, &err), PPROF_EGZIP);
    assert_msg_has(err, zlib_msg);
    assert_null(p);
    assert_int_equal(pprof__oneshot_used, used);
    free(gz);
}

/* zlib's refusal, from libdeflate alone and through the decoder. */
static void assert_refused(const bits *b, const uint8_t *want, size_t want_len,
                           const char *zlib_msg)
{
    assert_both_refuse(b, zlib_msg);
    assert_decode_refuses(b, want, want_len, zlib_msg);
}

/* A static block: 'a', then litlen symbol 286 (upstream: length 258) at
 * distance 1, then end of block. zlib: invalid literal/length code. */
static void test_static_symbol_286_is_refused(void **state)
{
    bits b = {0};
    uint8_t want[259];

    (void)state;
    put_bits(&b, 1, 1);
    put_bits(&b, 1, 2);
    put_code(&b, 0x30 + 'a', 8);      /* literals 0-143: 00110000 + n */
    put_code(&b, 0xc0 + (286 - 280), 8); /* 280-287: 11000000 + (n - 280) */
    put_code(&b, 0, 5);               /* distance symbol 0: 1 */
    put_code(&b, 0, 7);               /* end of block: 256 */
    flush_bits(&b);
    memset(want, 'a', sizeof(want));
    assert_refused(&b, want, sizeof(want), "invalid literal/length code");
}

/* 30,000 stored bytes, then a static block: length 3 at distance symbol 30
 * (upstream: 24,577 plus 13 extra bits). zlib: invalid distance code. */
static void test_static_distance_30_is_refused(void **state)
{
    static bits b;
    static uint8_t want[30003];
    const size_t n = 30000;

    (void)state;
    memset(&b, 0, sizeof(b));
    for (size_t i = 0; i < n; i++)
        want[i] = (uint8_t)('a' + i % 26);
    put_bits(&b, 0, 1); /* a stored block, not final */
    put_bits(&b, 0, 2);
    flush_bits(&b);
    put_bits(&b, (uint32_t)n, 16);
    put_bits(&b, (uint32_t)~n & 0xffff, 16);
    memcpy(b.buf + b.n, want, n);
    b.n += n;
    put_bits(&b, 1, 1);
    put_bits(&b, 1, 2);
    put_code(&b, 1, 7);  /* 257: length 3 */
    put_code(&b, 30, 5); /* distance symbol 30 */
    put_bits(&b, 0, 13); /* its extra bits */
    put_code(&b, 0, 7);
    flush_bits(&b);
    memcpy(want + n, want + n - 24577, 3);
    assert_refused(&b, want, sizeof(want), "invalid distance code");
}

/* A dynamic block whose HLIT says 287 codes, one of them 286, which it
 * uses. zlib: too many length or distance symbols. */
static void test_dynamic_287_codes_are_refused(void **state)
{
    bits b = {0};
    dyn d = {0};
    uint8_t want[259];

    (void)state;
    d.nlit = 287;
    d.ndist = 2;
    d.lit_lens['a'] = 2;
    d.lit_lens[256] = 2;
    d.lit_lens[286] = 1;
    d.dist_lens[0] = 1;
    d.dist_lens[1] = 1;
    put_dynamic_header(&b, &d, true);
    put_code(&b, d.lit['a'], 2);
    put_code(&b, d.lit[286], 1);
    put_code(&b, d.dist[0], 1);
    put_code(&b, d.lit[256], 2);
    flush_bits(&b);
    memset(want, 'a', sizeof(want));
    assert_refused(&b, want, sizeof(want), "too many length or distance symbols");
}

/* A one-codeword distance code (length 1), and a match that sends the
 * codeword zlib leaves unassigned ('1'; upstream gives the symbol both).
 * zlib: invalid distance code. */
static void test_unassigned_distance_codeword_is_refused(void **state)
{
    bits b = {0};
    dyn d = {0};
    const uint8_t want[4] = {'a', 'a', 'a', 'a'};

    (void)state;
    d.nlit = 258;
    d.ndist = 1;
    d.lit_lens['a'] = 1;
    d.lit_lens[256] = 2;
    d.lit_lens[257] = 2;
    d.dist_lens[0] = 1;
    put_dynamic_header(&b, &d, true);
    put_code(&b, d.lit['a'], 1);
    put_code(&b, d.lit[257], 2); /* length 3 */
    put_bits(&b, 1, 1);          /* distance codeword '1' */
    put_code(&b, d.lit[256], 2);
    flush_bits(&b);
    assert_refused(&b, want, sizeof(want), "invalid distance code");
}

/* The same one-codeword distance code, unused, as Go's writer makes for a
 * block with few matches: valid, so the decoder takes it through zlib. */
static void test_incomplete_code_falls_back_to_zlib(void **state)
{
    size_t rawlen, len;
    uint8_t *raw = read_fixture("profiles/sort-raw.pb", &rawlen);
    uint8_t *gz;
    static bits b;
    dyn d = {0};
    pprof_profile *p = NULL, *q = NULL;
    pprof_error err = {0, ""};
    unsigned long used = pprof__oneshot_used;

    (void)state;
    assert_true(rawlen < 60000);
    memset(&b, 0, sizeof(b));
    d.nlit = 257;
    d.ndist = 1;
    for (unsigned i = 0; i < 257; i++) /* 255 x 8 bits + 2 x 9 bits */
        d.lit_lens[i] = i < 255 ? 8 : 9;
    d.dist_lens[0] = 1;
    put_dynamic_header(&b, &d, true);
    for (size_t i = 0; i < rawlen; i++)
        put_code(&b, d.lit[raw[i]], d.lit_lens[raw[i]]);
    put_code(&b, d.lit[256], 9);
    flush_bits(&b);
    gz = gzip_member(&b, raw, rawlen, &len);
    if (pprof_decode_mem(gz, len, NULL, &p, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(pprof__oneshot_used, used);
    assert_int_equal(pprof_decode_mem(raw, rawlen, NULL, &q, &err), 0);
    assert_int_equal(p->samples.n, q->samples.n);
    assert_int_equal(p->inflated, rawlen);
    pprof_profile_free(p);
    pprof_profile_free(q);
    free(gz);
    free(raw);
}

/* ---- the one-shot path against zlib's streaming path --------------------- */

static int decode_mem_path(const uint8_t *buf, size_t len, const pprof_limits *lim,
                           bool oneshot, pprof_profile **p, pprof_error *err)
{
    int rc;

    pprof__oneshot_off = !oneshot;
    rc = pprof_decode_mem(buf, len, lim, p, err);
    pprof__oneshot_off = false;
    return rc;
}

/* Every gzip fixture takes the one-shot path, from memory and from a file,
 * and gives the streaming path's tables and charge. */
static void test_oneshot_matches_streaming(void **state)
{
    size_t i, len;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        uint8_t *buf = read_fixture(cpu_fixtures[i], &len);
        pprof_profile *fast = NULL, *slow = NULL, *file = NULL;
        pprof_error err = {0, ""};
        unsigned long used = pprof__oneshot_used, gz = buf[0] == 0x1f; /* else raw */
        int fd = open(fixture_path(cpu_fixtures[i]), O_RDONLY);

        assert_int_equal(decode_mem_path(buf, len, NULL, true, &fast, &err), 0);
        assert_int_equal(pprof__oneshot_used, used + gz);
        assert_int_equal(decode_mem_path(buf, len, NULL, false, &slow, &err), 0);
        assert_int_equal(pprof__oneshot_used, used + gz);
        assert_true(fd >= 0);
        assert_int_equal(pprof_decode_fd(fd, NULL, &file, &err), 0);
        close(fd);
        assert_int_equal(pprof__oneshot_used, used + 2 * gz);
        assert_same_profile(fast, slow);
        assert_same_tables(file, slow);
        pprof_profile_free(fast);
        pprof_profile_free(slow);
        pprof_profile_free(file);
        free(buf);
    }
}

/* A real profile with one more sample of 100,000 frames: a 100 KB message,
 * for which the streaming window must grow past 64 KiB (gzip, returns
 * owned). */
static uint8_t *long_sample_profile(size_t *len)
{
    size_t rawlen, n = 100000;
    uint8_t *raw = read_fixture("profiles/sort-raw.pb", &rawlen), *gz;
    uint64_t *ids = malloc(n * sizeof(*ids)), vals[2] = {1, 10000000};
    pbw prof = {0}, sample = {0};

    for (size_t i = 0; i < n; i++)
        ids[i] = 1;
    pbw_packed(&sample, 1, ids, n);
    pbw_packed(&sample, 2, vals, 2);
    pbw_raw(&prof, raw, rawlen);
    pbw_msg(&prof, 2, &sample);
    gz = gzip_bytes(prof.p, prof.n, len);
    free(sample.p);
    free(prof.p);
    free(ids);
    free(raw);
    return gz;
}

/* Under every memory limit from too small to enough, both paths give the
 * same answer and message, and the same charge: the one-shot window is
 * charged as the streaming window would have grown, for the fields of a
 * real profile and for one field longer than the first window. */
static void test_oneshot_limits_match_streaming(void **state)
{
    size_t len, longlen;
    uint8_t *buf = read_fixture("profiles/mixed.pb.gz", &len);
    uint8_t *longbuf = long_sample_profile(&longlen);
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    unsigned long used = pprof__oneshot_used;

    (void)state;
    assert_int_equal(decode_mem_path(longbuf, longlen, NULL, true, &p, &err), 0);
    assert_int_equal(pprof__oneshot_used, used + 1);
    pprof_profile_free(p);
    for (uint64_t mem = 16 << 10; mem <= (4u << 20); mem += mem / 8) {
        pprof_limits lim = {0, mem};
        pprof_profile *a = NULL, *b = NULL;
        pprof_error ea = {0, ""}, eb = {0, ""};
        for (int k = 0; k < 2; k++) {
            const uint8_t *in = k ? longbuf : buf;
            size_t inlen = k ? longlen : len;
            int ra = decode_mem_path(in, inlen, &lim, true, &a, &ea);
            int rb = decode_mem_path(in, inlen, &lim, false, &b, &eb);

            assert_int_equal(ra, rb);
            if (ra)
                assert_string_equal(ea.msg, eb.msg);
            else
                assert_same_profile(a, b);
            pprof_profile_free(a);
            pprof_profile_free(b);
            a = b = NULL;
        }
    }
    free(longbuf);
    free(buf);
}

/* Both paths give the same answer, code and message. */
static void assert_paths_agree(const uint8_t *buf, size_t len, int want)
{
    pprof_profile *a = NULL, *b = NULL;
    pprof_error ea = {0, ""}, eb = {0, ""};
    unsigned long used = pprof__oneshot_used;

    assert_int_equal(decode_mem_path(buf, len, NULL, true, &a, &ea), want);
    /* Only a good single member without a header CRC is taken whole. */
    assert_int_equal(pprof__oneshot_used, used + (want == 0 && !(buf[3] & 0x02)));
    assert_int_equal(decode_mem_path(buf, len, NULL, false, &b, &eb), want);
    assert_string_equal(ea.msg, eb.msg);
    if (want == 0)
        assert_same_profile(a, b);
    pprof_profile_free(a);
    pprof_profile_free(b);
}

/* Inputs the one-shot path leaves to zlib: a trailer whose size lies
 * (smaller, bigger), a header with a CRC-16 (FHCRC: libdeflate would skip
 * it, zlib and Go check it), right or wrong, a second member. */
static void test_oneshot_declines(void **state)
{
    size_t rawlen, len;
    uint8_t *raw = read_fixture("profiles/sort-raw.pb", &rawlen);
    uint8_t *gz = gzip_bytes(raw, rawlen, &len), *h;
    uint32_t crc;

    (void)state;
    assert_paths_agree(gz, len, 0);
    gz[len - 4] ^= 0x01; /* ISIZE one off */
    assert_paths_agree(gz, len, PPROF_EGZIP);
    gz[len - 4] ^= 0x01;
    gz[len - 1] = 0x7f; /* ISIZE far too big: past the one-shot cap */
    assert_paths_agree(gz, len, PPROF_EGZIP);
    gz[len - 1] = 0;
    gz[len - 8] ^= 0x01; /* CRC-32 */
    assert_paths_agree(gz, len, PPROF_EGZIP);
    gz[len - 8] ^= 0x01;

    /* FHCRC: the 10-byte header, then the CRC-16 of it, then the rest. */
    h = malloc(2 * len + 2);
    memcpy(h, gz, 10);
    h[3] |= 0x02;
    crc = (uint32_t)crc32(0, h, 10);
    h[10] = (uint8_t)crc;
    h[11] = (uint8_t)(crc >> 8);
    memcpy(h + 12, gz + 10, len - 10);
    assert_paths_agree(h, len + 2, 0);
    h[10] ^= 0xff;
    assert_paths_agree(h, len + 2, PPROF_EGZIP);

    /* Half the profile in each of two members: zlib's multistream path. */
    {
        size_t alen, blen;
        uint8_t *a = gzip_bytes(raw, rawlen / 2, &alen);
        uint8_t *b = gzip_bytes(raw + rawlen / 2, rawlen - rawlen / 2, &blen);
        unsigned long used = pprof__oneshot_used;
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        memcpy(h, a, alen);
        memcpy(h + alen, b, blen);
        assert_int_equal(pprof_decode_mem(h, alen + blen, NULL, &p, &err), 0);
        assert_int_equal(pprof__oneshot_used, used);
        assert_int_equal(p->inflated, rawlen);
        pprof_profile_free(p);
        free(a);
        free(b);
    }
    free(h);
    free(gz);
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_symbol_286_is_refused),
        cmocka_unit_test(test_static_distance_30_is_refused),
        cmocka_unit_test(test_dynamic_287_codes_are_refused),
        cmocka_unit_test(test_unassigned_distance_codeword_is_refused),
        cmocka_unit_test(test_incomplete_code_falls_back_to_zlib),
        cmocka_unit_test(test_oneshot_matches_streaming),
        cmocka_unit_test(test_oneshot_limits_match_streaming),
        cmocka_unit_test(test_oneshot_declines),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
