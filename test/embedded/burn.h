/*
 * burn.h: CPU burners with known names for libpgof's tests and benchmark.
 *
 * DESIGN
 * burn_hot and burn_cold spin the same xorshift loop (different shift
 * triples, so the compiler cannot fold them into one function) for a given
 * number of iterations; equal iterations cost equal CPU. burn_mix runs them
 * 3:1 in pseudo-random chunk lengths, so a 100 Hz sampler cannot alias
 * with a fixed work cycle, and accumulates each function's thread CPU time
 * so a test can compare the profile with what really ran.
 */
#ifndef PGOF_TEST_BURN_H
#define PGOF_TEST_BURN_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

static volatile uint64_t burn_sink;

__attribute__((noinline)) uint64_t burn_hot(uint64_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ull + n;
    while (n--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        __asm__ volatile("" : "+r"(x));
    }
    burn_sink += x;
    return x;
}

__attribute__((noinline)) uint64_t burn_cold(uint64_t n)
{
    uint64_t x = 0xbf58476d1ce4e5b9ull + n;
    while (n--) {
        x ^= x << 5;
        x ^= x >> 9;
        x ^= x << 7;
        __asm__ volatile("" : "+r"(x));
    }
    burn_sink += x;
    return x;
}

static inline int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU time measured inside each burner, summed over threads. */
static _Atomic int64_t burn_hot_ns, burn_cold_ns;

/* Runs hot:cold = 3:1 by iterations until wall-clock ns have passed. */
static inline void burn_mix(int64_t wall_ns, uint64_t unit, uint32_t seed)
{
    int64_t end = mono_ns() + wall_ns, hot = 0, cold = 0;

    while (mono_ns() < end) {
        uint64_t r;
        int64_t t0, t1, t2;
        seed = seed * 1103515245u + 12345u;
        r = 1 + (seed >> 16) % 8;
        t0 = thread_cpu_ns();
        burn_hot(3 * r * unit);
        t1 = thread_cpu_ns();
        burn_cold(r * unit);
        t2 = thread_cpu_ns();
        hot += t1 - t0;
        cold += t2 - t1;
    }
    atomic_fetch_add(&burn_hot_ns, hot);
    atomic_fetch_add(&burn_cold_ns, cold);
}

#endif /* PGOF_TEST_BURN_H */
