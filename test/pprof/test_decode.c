/*
 * test_decode.c: src/pprof/decode.c: the real fixtures from a descriptor and
 * from memory, the bad fixtures, gzip bombs, concatenated gzip members,
 * truncation at every byte, the memory cap, allocation failure, and
 * decoding in the memory of a spare profile.
 */
#include <fcntl.h>
#include <time.h>

#include "pprof/helpers.h"

static int decode_path(const char *rel, pprof_profile **p, pprof_error *err)
{
    int fd = open(fixture_path(rel), O_RDONLY);
    int rc;

    assert_true(fd >= 0);
    rc = pprof_decode_fd(fd, NULL, p, err);
    close(fd);
    return rc;
}

static void test_fixtures_fd_and_mem_agree(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_profile *a = NULL, *b = decode_fixture(cpu_fixtures[i]);
        pprof_error err = {0, ""};
        if (decode_path(cpu_fixtures[i], &a, &err))
            fail_msg("%s: %s", cpu_fixtures[i], err.msg);
        assert_true(b->samples.n > 0);
        assert_int_equal(a->samples.n, b->samples.n);
        assert_int_equal(a->locations.n, b->locations.n);
        assert_int_equal(a->strings.n, b->strings.n);
        assert_int_equal(a->inflated, b->inflated);
        assert_int_equal(total(a, 1), total(b, 1));
        assert_true(total(a, 0) > 0);
        pprof_profile_free(a);
        pprof_profile_free(b);
    }
}

/* sort-raw.pb is sort.pb.gz inflated: the same tables. */
static void test_raw_equals_gzip(void **state)
{
    pprof_profile *raw = decode_fixture("profiles/sort-raw.pb");
    pprof_profile *gz = decode_fixture("profiles/sort.pb.gz");

    (void)state;
    assert_int_equal(raw->inflated, gz->inflated);
    assert_int_equal(raw->samples.n, gz->samples.n);
    assert_int_equal(raw->strbytes.n, gz->strbytes.n);
    assert_memory_equal(raw->strbytes.p, gz->strbytes.p, raw->strbytes.n);
    assert_memory_equal(raw->values.p, gz->values.p, raw->values.n * sizeof(int64_t));
    assert_int_equal(raw->time_nanos, gz->time_nanos);
    assert_int_equal(raw->period, 10000000);
    pprof_profile_free(raw);
    pprof_profile_free(gz);
}

static void test_bad_fixtures(void **state)
{
    static const struct {
        const char *rel;
        int code;
        const char *msg;
    } bad[] = {
        {"bad/empty.pb", PPROF_EEMPTY, "the input is empty"},
        {"bad/garbage.bin", PPROF_EPROTO, "at byte"},
        {"bad/text.txt", PPROF_EPROTO, "at byte 0"},
        {"bad/truncated.pb.gz", PPROF_EGZIP, "gzip stream truncated after 700 bytes"},
    };
    size_t i, len;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        uint8_t *buf;
        int rc = decode_path(bad[i].rel, &p, &err);
        if (rc != bad[i].code)
            fail_msg("%s: fd: %d %s", bad[i].rel, rc, err.msg);
        assert_null(p);
        assert_msg_has(err, bad[i].msg);
        buf = read_fixture(bad[i].rel, &len);
        memset(&err, 0, sizeof(err));
        assert_int_equal(pprof_decode_mem(buf, len, NULL, &p, &err), bad[i].code);
        assert_msg_has(err, bad[i].msg);
        free(buf);
    }
}

/* A stream of unknown 1 MiB fields of zeros: valid protobuf, huge ratio. */
static uint8_t *make_bomb(uint64_t inflated, size_t *len)
{
    static uint8_t chunk[(1 << 20) + 8];
    size_t cap = inflated / 512 + 4096, hdr;
    uint8_t *out = malloc(cap);
    uint64_t done = 0;
    z_stream z;

    memset(&z, 0, sizeof(z));
    /* field 100, wire type 2, length 1 MiB, then 1 MiB of zeros */
    chunk[0] = 0xa2;
    chunk[1] = 0x06;
    chunk[2] = 0x80;
    chunk[3] = 0x80;
    chunk[4] = 0x40;
    hdr = 5;
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    while (done < inflated) {
        z.next_in = chunk;
        z.avail_in = (uInt)(hdr + (1 << 20));
        assert_int_equal(deflate(&z, Z_NO_FLUSH), Z_OK);
        done += hdr + (1 << 20);
    }
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *len = z.total_out;
    deflateEnd(&z);
    return out;
}

static void test_gzip_bomb(void **state)
{
    pprof_limits lim = {1 << 20, 0};
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    struct timespec t0, t1;
    size_t len;
    uint8_t *bomb;
    double secs;

    (void)state;
    /* About 10 KB of gzip inflating to 10 MiB, against a 1 MiB cap. */
    bomb = make_bomb(10u << 20, &len);
    assert_true(len < 16 * 1024);
    talloc_install(-1);
    assert_int_equal(pprof_decode_mem(bomb, len, &lim, &p, &err), PPROF_ETOOBIG);
    assert_msg_has(err, "more than the 1048576-byte limit");
    assert_true(talloc.peak < (512u << 10));
    talloc_remove();
    free(bomb);

    /* 300 MiB inflated from ~300 KB against the 256 MiB default: fast, small. */
    bomb = make_bomb(300u << 20, &len);
    assert_true(len < 1024 * 1024);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    talloc_install(-1);
    assert_int_equal(pprof_decode_mem(bomb, len, NULL, &p, &err), PPROF_ETOOBIG);
    assert_true(talloc.peak < (512u << 10));
    talloc_remove();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 10)
        fail_msg("bomb took %.1f s", secs);
    free(bomb);
}

/* A field claiming more bytes than the cap fails before reading them. */
static void test_claimed_length_over_cap(void **state)
{
    static const uint8_t huge[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f};
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};

    (void)state;
    assert_int_equal(pprof_decode_mem(huge, sizeof(huge), NULL, &p, &err), PPROF_ETOOBIG);
    assert_msg_has(err, "claims 4294967295 bytes");
}

/* Go's gzip reader is multistream: two members inflate to their concatenation. */
static void test_gzip_members(void **state)
{
    size_t rawlen, alen, blen, half;
    uint8_t *raw = read_fixture("profiles/sort-raw.pb", &rawlen);
    uint8_t *a, *b, *cat;
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};

    (void)state;
    half = rawlen / 2;
    a = gzip_bytes(raw, half, &alen);
    b = gzip_bytes(raw + half, rawlen - half, &blen);
    cat = malloc(alen + blen + 4);
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    assert_int_equal(pprof_decode_mem(cat, alen + blen, NULL, &p, &err), 0);
    assert_int_equal(p->inflated, rawlen);
    assert_int_equal(p->samples.n, 88);
    pprof_profile_free(p);

    /* Trailing bytes that are not a gzip header: refused, as Go does. */
    memcpy(cat + alen, "junk", 4);
    assert_int_equal(pprof_decode_mem(cat, alen + 4, NULL, &p, &err), PPROF_EGZIP);
    assert_msg_has(err, "unexpected data after the gzip stream");

    /* Two whole profiles in two members: concatenated profiles. */
    free(a);
    a = gzip_bytes(raw, rawlen, &alen);
    free(cat);
    cat = malloc(2 * alen);
    memcpy(cat, a, alen);
    memcpy(cat + alen, a, alen);
    assert_int_equal(pprof_decode_mem(cat, 2 * alen, NULL, &p, &err), PPROF_EINVALID);
    assert_msg_has(err, "concatenated profiles");
    free(a);
    free(b);
    free(cat);
    free(raw);
}

static void test_gzip_corrupt(void **state)
{
    size_t len;
    uint8_t *buf = read_fixture("profiles/fib.pb.gz", &len);
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};

    (void)state;
    buf[len - 6] ^= 0xff; /* inside the CRC32 trailer */
    assert_int_equal(pprof_decode_mem(buf, len, NULL, &p, &err), PPROF_EGZIP);
    assert_msg_has(err, "gzip stream corrupt");
    assert_null(p);
    free(buf);
}

/* Every prefix of a raw profile fails cleanly (or is a valid shorter one). */
static void test_every_truncation(void **state)
{
    size_t len, n, ok = 0;
    uint8_t *buf = read_fixture("profiles/sort-raw.pb", &len);

    (void)state;
    for (n = 1; n < len; n++) {
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        uint8_t *cut = malloc(n); /* exact size so ASan sees overreads */
        int rc;
        memcpy(cut, buf, n);
        rc = pprof_decode_mem(cut, n, NULL, &p, &err);
        if (rc == 0) {
            ok++;
            pprof_profile_free(p);
        } else {
            assert_true(rc == PPROF_EPROTO || rc == PPROF_EINVALID);
            assert_int_equal(err.code, rc);
            assert_true(err.msg[0] != '\0');
        }
        free(cut);
    }
    /* Only cuts at a field boundary after the string table can be valid. */
    assert_true(ok < 20);
    free(buf);
}

static void test_memory_cap(void **state)
{
    pprof_limits lim = {0, 4096};
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    size_t len;
    uint8_t *buf = read_fixture("profiles/sort-raw.pb", &len);

    (void)state;
    assert_int_equal(pprof_decode_mem(buf, len, &lim, &p, &err), PPROF_ELIMIT);
    assert_msg_has(err, "passes the memory limit");
    assert_null(p);
    free(buf);
    /* gzip: the 64 KiB read window counts too. */
    buf = read_fixture("profiles/mixed.pb.gz", &len);
    assert_int_equal(pprof_decode_mem(buf, len, &lim, &p, &err), PPROF_ELIMIT);
    assert_msg_has(err, "smaller than the 65536-byte read window");
    lim.max_memory = 80 << 10;
    assert_int_equal(pprof_decode_mem(buf, len, &lim, &p, &err), PPROF_ELIMIT);
    assert_msg_has(err, "passes the memory limit");
    lim.max_memory = 4 << 20;
    assert_int_equal(pprof_decode_mem(buf, len, &lim, &p, &err), 0);
    assert_true(p->budget.used <= lim.max_memory);
    pprof_profile_free(p);
    free(buf);
}

/* sort-raw.pb plus one sample of a million frames, about 1 MB of raw
 * protobuf in prof (the caller frees prof->p). */
static void million_frames(pbw *prof)
{
    size_t rawlen, n = 1000000, i;
    uint8_t *raw = read_fixture("profiles/sort-raw.pb", &rawlen);
    uint64_t *ids = malloc(n * sizeof(*ids)), vals[2] = {1, 10000000};
    pbw sample = {0};

    for (i = 0; i < n; i++)
        ids[i] = 1;
    pbw_packed(&sample, 1, ids, n);
    pbw_packed(&sample, 2, vals, 2);
    pbw_raw(prof, raw, rawlen);
    pbw_msg(prof, 2, &sample);
    free(sample.p);
    free(ids);
    free(raw);
}

/* A table that outgrows what doubling can fit under the limit grows in
 * eighths up to it, a handful of reallocations, not one per element: a
 * 1 MB sample of a million frames, under limits that refuse it and one
 * that takes it. */
static void test_memory_cap_growth_is_not_quadratic(void **state)
{
    static const uint64_t limits[] = {5u << 20, 7u << 20, 9u << 20};
    pbw prof = {0};
    size_t i;

    (void)state;
    million_frames(&prof);
    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        pprof_limits lim = {0, limits[i]};
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        int rc;
        talloc_install(-1);
        rc = pprof_decode_mem(prof.p, prof.n, &lim, &p, &err);
        /* Growing by the exact need took about 300,000 reallocations. */
        if (talloc.calls > 300)
            fail_msg("limit %llu: %zu allocations", (unsigned long long)limits[i],
                     talloc.calls);
        if (i < 2) {
            assert_int_equal(rc, PPROF_ELIMIT);
            assert_msg_has(err, "passes the memory limit");
        } else {
            assert_int_equal(rc, 0);
            assert_true(p->budget.used <= lim.max_memory);
        }
        pprof_profile_free(p);
        talloc_remove();
    }
    free(prof.p);
}

static void test_fd_errors(void **state)
{
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    int fd = open(fixtures_dir(), O_RDONLY | O_DIRECTORY);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(pprof_decode_fd(fd, NULL, &p, &err), PPROF_EIO);
    assert_msg_has(err, "reading the profile failed");
    close(fd);
    assert_int_equal(pprof_decode_fd(-1, NULL, &p, &err), PPROF_EIO);
    assert_int_equal(pprof_decode_mem(NULL, 0, NULL, &p, &err), PPROF_EEMPTY);
}

/* A pipe (no seeking, short reads) decodes like a file. */
static void test_fd_pipe(void **state)
{
    size_t len;
    uint8_t *buf = read_fixture("profiles/json.pb.gz", &len);
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};
    int fds[2];
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    if (pid == 0) {
        size_t off = 0;
        close(fds[0]);
        while (off < len) { /* dribble 100 bytes at a time */
            size_t n = len - off < 100 ? len - off : 100;
            if (write(fds[1], buf + off, n) != (ssize_t)n)
                _exit(1);
            off += n;
        }
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(pprof_decode_fd(fds[0], NULL, &p, &err), 0);
    assert_int_equal(p->samples.n, 95);
    close(fds[0]);
    pprof_profile_free(p);
    free(buf);
}

/* Every allocation in decoding fails in turn: ENOMEM, no leak, no crash. */
static void test_alloc_failure(void **state)
{
    size_t len;
    uint8_t *buf = read_fixture("profiles/labels.pb.gz", &len);
    long n;
    int rc = PPROF_ENOMEM;

    (void)state;
    for (n = 0; rc == PPROF_ENOMEM; n++) {
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        talloc_install(n);
        rc = pprof_decode_mem(buf, len, NULL, &p, &err);
        if (rc == PPROF_ENOMEM) {
            assert_null(p);
            assert_msg_has(err, "out of memory");
        } else {
            assert_int_equal(rc, 0);
            pprof_profile_free(p);
        }
        talloc_remove();
        assert_int_equal(talloc.live, 0);
    }
    assert_true(n > 10);
    free(buf);
}

/* ---- pprof_decode_fd_reuse --------------------------------------------- */

static int decode_reuse(const char *rel, const pprof_limits *lim, pprof_profile *spare,
                        pprof_profile **p, pprof_error *err)
{
    int fd = open(fixture_path(rel), O_RDONLY);
    int rc;

    assert_true(fd >= 0);
    rc = pprof_decode_fd_reuse(fd, lim, spare, p, err);
    close(fd);
    return rc;
}


/* Each fixture decoded in the memory of each other one equals its fresh
 * decode: larger and smaller spares, labels, raw and gzip. */
static void test_reuse_decodes_the_same(void **state)
{
    size_t i, j;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        pprof_profile *fresh = NULL;
        pprof_error err = {0, ""};
        if (decode_reuse(cpu_fixtures[i], NULL, NULL, &fresh, &err))
            fail_msg("%s: %s", cpu_fixtures[i], err.msg);
        for (j = 0; j < N_CPU_FIXTURES; j++) {
            pprof_profile *spare = NULL, *p = NULL;
            if (decode_reuse(cpu_fixtures[j], NULL, NULL, &spare, &err))
                fail_msg("%s: %s", cpu_fixtures[j], err.msg);
            if (decode_reuse(cpu_fixtures[i], NULL, spare, &p, &err))
                fail_msg("%s in %s: %s", cpu_fixtures[i], cpu_fixtures[j], err.msg);
            assert_same_profile(fresh, p);
            pprof_profile_free(p);
        }
        pprof_profile_free(fresh);
    }
}

/* A profile whose tables hold over 8 MiB (million_frames). */
static pprof_profile *big_spare(void)
{
    pbw prof = {0};
    pprof_profile *p = NULL;
    pprof_error err = {0, ""};

    million_frames(&prof);
    if (pprof_decode_mem(prof.p, prof.n, NULL, &p, &err))
        fail_msg("%s", err.msg);
    assert_true(pprof_profile_memory(p) > (8u << 20));
    free(prof.p);
    return p;
}

/* The smallest max_memory under which a fresh decode of rel succeeds. */
static uint64_t least_limit(const char *rel)
{
    uint64_t lo = 1, hi = 64u << 20; /* fails at lo, succeeds at hi */

    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        pprof_limits lim = {0, mid};
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        if (decode_reuse(rel, &lim, NULL, &p, &err) == 0)
            hi = mid;
        else
            lo = mid;
        pprof_profile_free(p);
    }
    return hi;
}

/* Reused memory is not charged: with a spare holding more than the whole
 * limit, a limit refuses or takes an input as it does in a fresh decode,
 * at the least limit that takes it and one byte under. */
static void test_reuse_keeps_the_limits(void **state)
{
    pprof_profile *fresh = NULL;
    pprof_error err = {0, ""};
    uint64_t least = least_limit("profiles/mixed.pb.gz");
    size_t i;

    (void)state;
    const uint64_t limits[] = {80u << 10, least - 1, least, 4u << 20};
    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        pprof_limits lim = {0, limits[i]};
        pprof_profile *p = NULL;
        pprof_error ferr = {0, ""};
        int frc = decode_reuse("profiles/mixed.pb.gz", &lim, NULL, &fresh, &ferr);
        assert_int_equal(frc, i < 2 ? PPROF_ELIMIT : 0);
        memset(&err, 0, sizeof(err));
        int rc = decode_reuse("profiles/mixed.pb.gz", &lim, big_spare(), &p, &err);
        assert_int_equal(rc, frc);
        assert_string_equal(err.msg, ferr.msg);
        if (rc == 0)
            assert_same_profile(fresh, p);
        pprof_profile_free(fresh);
        pprof_profile_free(p);
    }
}

/* After a reuse each table keeps at most four times what its profile
 * needed: a chain of reuses does not hold the largest table ever seen. */
static void test_reuse_trims_what_is_kept(void **state)
{
    pprof_profile *fresh = NULL, *p = NULL;
    pprof_error err = {0, ""};

    (void)state;
    assert_int_equal(decode_reuse("profiles/mixed.pb.gz", NULL, NULL, &fresh, &err), 0);
    assert_int_equal(decode_reuse("profiles/mixed.pb.gz", NULL, big_spare(), &p, &err), 0);
    assert_same_profile(fresh, p);
    if (pprof_profile_memory(p) > 4 * pprof_profile_memory(fresh))
        fail_msg("%zu bytes kept, %zu fresh", pprof_profile_memory(p),
                 pprof_profile_memory(fresh));
    pprof_profile_free(fresh);
    pprof_profile_free(p);
}

/* A spare of the same shape leaves nothing to grow: only the read window,
 * the input buffer and zlib's state are allocated. */
static void test_reuse_skips_table_growth(void **state)
{
    pprof_profile *spare = NULL, *p = NULL;
    pprof_error err = {0, ""};
    size_t fresh_calls, memory;

    (void)state;
    talloc_install(-1);
    assert_int_equal(decode_reuse("profiles/mixed.pb.gz", NULL, NULL, &spare, &err), 0);
    fresh_calls = talloc.calls;
    memory = pprof_profile_memory(spare);
    talloc.calls = 0;
    assert_int_equal(decode_reuse("profiles/mixed.pb.gz", NULL, spare, &p, &err), 0);
    /* Left: the read window, the input buffer, zlib's state and window,
     * the validator's id indexes. */
    if (talloc.calls > 8 || fresh_calls < 5 * talloc.calls)
        fail_msg("%zu allocations reusing, %zu fresh", talloc.calls, fresh_calls);
    assert_int_equal(pprof_profile_memory(p), memory);
    pprof_profile_free(p);
    talloc_remove();
    assert_int_equal(talloc.live, 0);
}

/* The spare is consumed on every failure: a bad descriptor, a corrupt
 * input, and each allocation failing in turn. */
static void test_reuse_consumes_the_spare(void **state)
{
    size_t len;
    uint8_t *buf = read_fixture("profiles/labels.pb.gz", &len);
    pprof_profile *spare = NULL, *p = NULL;
    pprof_error err = {0, ""};
    char path[] = "/tmp/pgof-test-reuse-XXXXXX";
    int fd = mkstemp(path), rc = PPROF_ENOMEM;
    long n;

    (void)state;
    assert_true(fd >= 0);
    unlink(path);
    talloc_install(-1);
    assert_int_equal(decode_reuse("profiles/sort.pb.gz", NULL, NULL, &spare, &err), 0);
    assert_int_equal(pprof_decode_fd_reuse(-1, NULL, spare, &p, &err), PPROF_EIO);
    assert_null(p);
    assert_int_equal(talloc.live, 0);

    assert_int_equal(write(fd, buf, len / 2), (ssize_t)(len / 2));
    assert_int_equal(decode_reuse("profiles/sort.pb.gz", NULL, NULL, &spare, &err), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_not_equal(pprof_decode_fd_reuse(fd, NULL, spare, &p, &err), 0);
    assert_null(p);
    assert_int_equal(talloc.live, 0);

    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
    for (n = 0; rc == PPROF_ENOMEM; n++) {
        talloc.fail_after = -1;
        assert_int_equal(decode_reuse("profiles/sort.pb.gz", NULL, NULL, &spare, &err), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        talloc.fail_after = n;
        rc = pprof_decode_fd_reuse(fd, NULL, spare, &p, &err);
        if (rc == PPROF_ENOMEM)
            assert_null(p);
        else
            assert_int_equal(rc, 0);
        pprof_profile_free(p);
        p = NULL;
        assert_int_equal(talloc.live, 0);
    }
    assert_true(n > 3);
    talloc_remove();
    close(fd);
    free(buf);
}

/* A first sample whose packed location ids are an empty run: the sample
 * fast path meets the ids table before anything allocated it (found by
 * fuzz_pprof under UBSan: an offset applied to its NULL pointer). */
static void test_empty_packed_run_first(void **state)
{
    size_t rawlen, i;
    uint8_t *raw = read_fixture("profiles/sort-raw.pb", &rawlen);
    uint64_t vals[2] = {1, 10000000};
    pbw prof = {0}, sample = {0};
    pprof_profile *p = NULL, *base = NULL;
    pprof_error err = {0, ""};

    (void)state;
    pbw_packed(&sample, 1, NULL, 0);
    pbw_packed(&sample, 2, vals, 2);
    pbw_msg(&prof, 2, &sample);
    pbw_raw(&prof, raw, rawlen);
    if (pprof_decode_mem(prof.p, prof.n, NULL, &p, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(pprof_decode_mem(raw, rawlen, NULL, &base, &err), 0);
    assert_int_equal(p->samples.n, base->samples.n + 1);
    assert_int_equal(PPROF__SLICE(p->samples, pprof__sample, 0)->nloc, 0);
    for (i = 1; i < p->samples.n; i++)
        assert_int_equal(PPROF__SLICE(p->samples, pprof__sample, i)->nloc,
                         PPROF__SLICE(base->samples, pprof__sample, i - 1)->nloc);
    pprof_profile_free(p);
    pprof_profile_free(base);
    free(sample.p);
    free(prof.p);
    free(raw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_fd_and_mem_agree),
        cmocka_unit_test(test_raw_equals_gzip),
        cmocka_unit_test(test_bad_fixtures),
        cmocka_unit_test(test_gzip_bomb),
        cmocka_unit_test(test_claimed_length_over_cap),
        cmocka_unit_test(test_gzip_members),
        cmocka_unit_test(test_gzip_corrupt),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_memory_cap),
        cmocka_unit_test(test_memory_cap_growth_is_not_quadratic),
        cmocka_unit_test(test_fd_errors),
        cmocka_unit_test(test_fd_pipe),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_reuse_decodes_the_same),
        cmocka_unit_test(test_reuse_keeps_the_limits),
        cmocka_unit_test(test_reuse_trims_what_is_kept),
        cmocka_unit_test(test_reuse_skips_table_growth),
        cmocka_unit_test(test_reuse_consumes_the_spare),
        cmocka_unit_test(test_empty_packed_run_first),
    };
    test_timeout(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
