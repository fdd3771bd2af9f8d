/*
 * config.c: reading and validating PGOF_* variables (see config.h).
 *
 * Runs at start-up on the main thread, before the loop exists. Defaults are
 * generous: they must let every real profile and every sane client through,
 * and only stop abuse.
 */
#include "collector/config.h"

#include "collector/log.h"
#include "common/mergeopts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define DEFAULT_BIND "127.0.0.1:8080"

int config_parse_size(const char *s, uint64_t *out) {
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return UV_EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return UV_EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return UV_EINVAL;
    }
    if (shift && (*end == 'i' || *end == 'I'))
        end++;
    if (shift && (*end == 'b' || *end == 'B'))
        end++;
    if (*end != '\0')
        return UV_EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return UV_EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int config_parse_seconds(const char *s, uint64_t *out_ms) {
    char *end;
    if (s == NULL || *s == '\0')
        return UV_EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v <= 0 || v > 86400.0 * 365)
        return UV_EINVAL;
    uint64_t ms = (uint64_t)(v * 1000.0 + 0.5);
    *out_ms = ms ? ms : 1;
    return 0;
}

static int parse_port(const char *s, int *port) {
    char *end;
    if (*s < '0' || *s > '9')
        return UV_EINVAL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > 65535)
        return UV_EINVAL;
    *port = (int)v;
    return 0;
}

int config_parse_bind(const char *s, struct sockaddr_storage *out, int *any,
                      char *err, size_t errlen) {
    char host[128];
    const char *colon;
    int port;
    memset(out, 0, sizeof *out);
    *any = 0;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "expected [address]:port");
            return UV_EINVAL;
        }
        size_t hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= sizeof host) {
            snprintf(err, errlen, "bad IPv6 address");
            return UV_EINVAL;
        }
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        if (parse_port(close + 2, &port) != 0) {
            snprintf(err, errlen, "bad port \"%s\"", close + 2);
            return UV_EINVAL;
        }
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) != 0) {
            snprintf(err, errlen, "bad IPv6 address \"%s\"", host);
            return UV_EINVAL;
        }
        return 0;
    }
    colon = strrchr(s, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "expected host:port or :port");
        return UV_EINVAL;
    }
    if (parse_port(colon + 1, &port) != 0) {
        snprintf(err, errlen, "bad port \"%s\"", colon + 1);
        return UV_EINVAL;
    }
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof host) {
        snprintf(err, errlen, "host too long");
        return UV_EINVAL;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (hl == 0) {
        /* ":port": every interface. The listener tries the IPv6 wildcard
         * (dual stack) first and falls back to IPv4. */
        *any = 1;
        uv_ip6_addr("::", port, (struct sockaddr_in6 *)out);
        return 0;
    }
    if (strchr(host, ':') != NULL) {
        snprintf(err, errlen, "an IPv6 address needs brackets: [%s]:%d", host, port);
        return UV_EINVAL;
    }
    if (strcasecmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) != 0 ||
        inet_pton(AF_INET, host, &((struct sockaddr_in *)out)->sin_addr) != 1) {
        snprintf(err, errlen, "\"%s\" is not a numeric IPv4 address (or localhost)", host);
        return UV_EINVAL;
    }
    return 0;
}

static const char *env_or(const char *name, const char *def) {
    const char *v = getenv(name);
    return (v != NULL && v[0] != '\0') ? v : def;
}

typedef struct size_var {
    const char *name;
    uint64_t def;
    uint64_t min;
    uint64_t max;
    size_t offset;
} size_var;

static const size_var size_vars[] = {
    {"PGOF_MAX_BODY_BYTES", 64u << 20, 1024, UINT64_C(1) << 40, offsetof(config, max_body_bytes)},
    {"PGOF_MAX_PROFILE_BYTES", UINT64_C(256) << 20, 1024, UINT64_C(1) << 40,
     offsetof(config, max_profile_bytes)},
    /* Decoded tables of one profile: a 200 KB gzip of 10 million empty
     * samples decodes to ~500 MB; real profiles need a few MB. */
    {"PGOF_MAX_PROFILE_MEMORY", UINT64_C(64) << 20, UINT64_C(1) << 20, UINT64_C(1) << 40,
     offsetof(config, max_profile_memory)},
    {"PGOF_MAX_HEADER_BYTES", 64u << 10, 1024, 16u << 20, offsetof(config, max_header_bytes)},
    {"PGOF_MAX_HEADERS", 100, 4, 10000, offsetof(config, max_headers)},
    {"PGOF_MAX_CONNECTIONS", 1024, 1, 1000000, offsetof(config, max_connections)},
};

typedef struct time_var {
    const char *name;
    uint64_t def_ms;
    size_t offset;
} time_var;

static const time_var time_vars[] = {
    {"PGOF_IDLE_TIMEOUT", 30000, offsetof(config, idle_timeout_ms)},
    {"PGOF_REQUEST_TIMEOUT", 60000, offsetof(config, request_timeout_ms)},
    {"PGOF_SHUTDOWN_GRACE", 10000, offsetof(config, shutdown_grace_ms)},
};

/*
 * A submit job spends about as long blocked in fsync as it runs on a CPU, and
 * the serial commit holds a thread of its own: with libuv's default of 4
 * threads two CPUs sat partly idle under load. 4 per CPU measured best for
 * throughput while /healthz stayed under its latency target
 * (docs/performance.md, fourth round of "Optimisations").
 */
unsigned config_default_worker_threads(void) {
    return config_cpus() * 4;
}

unsigned config_cpus(void) {
    /* The CPUs this process may run on (its affinity mask), and fewer when
     * a cgroup v2 quota (docker --cpus, a Kubernetes limit) says so: a
     * 2-CPU container on a 64-core host counts 2, not 64. */
    unsigned cpus = uv_available_parallelism();
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f != NULL) {
        unsigned long long quota, period;
        if (fscanf(f, "%llu %llu", &quota, &period) == 2 && period > 0) {
            unsigned long long q = (quota + period - 1) / period;
            if (q < cpus)
                cpus = (unsigned)q;
        }
        fclose(f);
    }
    if (cpus < 1)
        cpus = 1;
    if (cpus > 16)
        cpus = 16;
    return cpus;
}

static int load_worker_threads(config *cfg, char *err, size_t errlen) {
    const char *s = getenv("PGOF_WORKER_THREADS");
    const char *uv = getenv("UV_THREADPOOL_SIZE");
    if (s == NULL || s[0] == '\0') {
        if (uv != NULL && uv[0] != '\0') {
            /* The operator set libuv's own variable: it stands. Reported as
             * libuv reads it: atoi into an unsigned (so -1 wraps to the
             * cap), then 1 to 1024. */
            unsigned n = (unsigned)atoi(uv);
            cfg->worker_threads = n < 1 ? 1 : n > 1024 ? 1024 : n;
            cfg->worker_threads_set = 0;
            return 0;
        }
        cfg->worker_threads = config_default_worker_threads();
        cfg->worker_threads_set = 1;
        return 0;
    }
    uint64_t n;
    if (config_parse_size(s, &n) != 0 || strspn(s, "0123456789") != strlen(s) || n < 1 ||
        n > 1024) {
        snprintf(err, errlen, "PGOF_WORKER_THREADS=\"%s\": must be a whole number from 1 to 1024",
                 s);
        return UV_EINVAL;
    }
    cfg->worker_threads = (unsigned)n;
    cfg->worker_threads_set = 1;
    return 0;
}

static int load_worker_nice(config *cfg, char *err, size_t errlen) {
    const char *s = getenv("PGOF_WORKER_NICE");
    uint64_t n = 5;
    if (s != NULL && s[0] != '\0' &&
        (config_parse_size(s, &n) != 0 || strspn(s, "0123456789") != strlen(s) || n > 19)) {
        snprintf(err, errlen, "PGOF_WORKER_NICE=\"%s\": must be a whole number from 0 to 19", s);
        return UV_EINVAL;
    }
    cfg->worker_nice = (int)n;
    return 0;
}

int config_load(config *cfg, char *err, size_t errlen) {
    char why[256];
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_address = env_or("PGOF_BIND_ADDRESS", DEFAULT_BIND);
    cfg->directory = env_or("PGOF_DIRECTORY", "./profiles");
    cfg->submit_keys_file = env_or("PGOF_SUBMIT_AUTH_KEYS_FILE", "/secret/submit_keys");
    cfg->merge_keys_file = env_or("PGOF_MERGE_AUTH_KEYS_FILE", "/secret/merge_keys");

    if (config_parse_bind(cfg->bind_address, &cfg->bind_addr, &cfg->bind_any, why,
                          sizeof why) != 0) {
        snprintf(err, errlen, "PGOF_BIND_ADDRESS=\"%s\": %s", cfg->bind_address, why);
        return UV_EINVAL;
    }
    for (size_t i = 0; i < sizeof size_vars / sizeof size_vars[0]; i++) {
        const size_var *v = &size_vars[i];
        uint64_t *dst = (uint64_t *)((char *)cfg + v->offset);
        const char *s = getenv(v->name);
        *dst = v->def;
        if (s == NULL || s[0] == '\0')
            continue;
        if (config_parse_size(s, dst) != 0) {
            snprintf(err, errlen, "%s=\"%s\": not a size (a number, optionally with K, M or G)",
                     v->name, s);
            return UV_EINVAL;
        }
        if (*dst < v->min || *dst > v->max) {
            snprintf(err, errlen, "%s=\"%s\": must be between %llu and %llu", v->name, s,
                     (unsigned long long)v->min, (unsigned long long)v->max);
            return UV_EINVAL;
        }
    }
    for (size_t i = 0; i < sizeof time_vars / sizeof time_vars[0]; i++) {
        const time_var *v = &time_vars[i];
        uint64_t *dst = (uint64_t *)((char *)cfg + v->offset);
        const char *s = getenv(v->name);
        *dst = v->def_ms;
        if (s == NULL || s[0] == '\0')
            continue;
        if (config_parse_seconds(s, dst) != 0) {
            snprintf(err, errlen, "%s=\"%s\": not a positive number of seconds", v->name, s);
            return UV_EINVAL;
        }
    }
    const char *lvl = env_or("PGOF_LOG_LEVEL", "info");
    cfg->log_level = log_parse_level(lvl);
    if (cfg->log_level < 0) {
        snprintf(err, errlen, "PGOF_LOG_LEVEL=\"%s\": must be error, warn, info or debug", lvl);
        return UV_EINVAL;
    }
    const char *ma = env_or("PGOF_METRICS_AUTH", "none");
    if (strcmp(ma, "none") == 0) {
        cfg->metrics_need_key = 0;
    } else if (strcmp(ma, "merge") == 0) {
        cfg->metrics_need_key = 1;
    } else {
        snprintf(err, errlen, "PGOF_METRICS_AUTH=\"%s\": must be none or merge", ma);
        return UV_EINVAL;
    }
    /* Off unless set: removing profiles is never a default. */
    const char *ret = env_or("PGOF_RETENTION", "off");
    if (strcmp(ret, "off") != 0 &&
        mergeopts_parse_duration(ret, strlen(ret), &cfg->retention_ms) != 0) {
        snprintf(err, errlen,
                 "PGOF_RETENTION=\"%s\": must be off or a duration (a number and a unit s, m, "
                 "h, d or w, e.g. 30d)",
                 ret);
        return UV_EINVAL;
    }
    int rc = load_worker_threads(cfg, err, errlen);
    return rc != 0 ? rc : load_worker_nice(cfg, err, errlen);
}

void config_describe(const config *cfg, char *out, size_t outsz) {
    char ret[32] = "off";
    if (cfg->retention_ms)
        mergeopts_format_duration(cfg->retention_ms, ret, sizeof ret);
    snprintf(out, outsz,
             "bind=%s directory=%s submit_keys=%s merge_keys=%s max_body=%llu "
             "max_profile=%llu max_profile_memory=%llu max_header_bytes=%llu max_headers=%llu max_connections=%llu "
             "idle_timeout=%.3fs request_timeout=%.3fs shutdown_grace=%.3fs log_level=%s "
             "metrics_auth=%s retention=%s worker_threads=%u worker_nice=%d",
             cfg->bind_address, cfg->directory, cfg->submit_keys_file, cfg->merge_keys_file,
             (unsigned long long)cfg->max_body_bytes,
             (unsigned long long)cfg->max_profile_bytes,
             (unsigned long long)cfg->max_profile_memory,
             (unsigned long long)cfg->max_header_bytes, (unsigned long long)cfg->max_headers,
             (unsigned long long)cfg->max_connections, cfg->idle_timeout_ms / 1000.0,
             cfg->request_timeout_ms / 1000.0, cfg->shutdown_grace_ms / 1000.0,
             log_level_name(cfg->log_level), cfg->metrics_need_key ? "merge" : "none", ret,
             cfg->worker_threads, cfg->worker_nice);
}
