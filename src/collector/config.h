/*
 * config.h: the collector's configuration, read once from the environment.
 *
 * DESIGN
 * Every setting comes from a PGOF_* environment variable, as in the Go
 * collector this program replaces; docs/configuration.md lists them all.
 * config_load() fills a config with defaults, applies the environment and
 * validates each value; on the first bad value it writes one line naming the
 * variable and the cause into err and returns a negative code. It touches no
 * files and no sockets, so it is unit-tested alone; main.c does the checks
 * that need the file system (directory, key files, bind).
 */
#ifndef COLLECTOR_CONFIG_H
#define COLLECTOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_ERR_MAX 512

typedef struct config {
    /* PGOF_BIND_ADDRESS, as given, and its parsed form. */
    const char *bind_address;
    struct sockaddr_storage bind_addr;
    /* Set for ":port": listen on every interface, IPv6 and IPv4. */
    int bind_any;

    const char *directory;         /* PGOF_DIRECTORY */
    const char *submit_keys_file;  /* PGOF_SUBMIT_AUTH_KEYS_FILE */
    const char *merge_keys_file;   /* PGOF_MERGE_AUTH_KEYS_FILE */

    uint64_t max_body_bytes;       /* PGOF_MAX_BODY_BYTES */
    uint64_t max_profile_bytes;    /* PGOF_MAX_PROFILE_BYTES (inflated) */
    uint64_t max_profile_memory;   /* PGOF_MAX_PROFILE_MEMORY (decoded) */
    uint64_t max_header_bytes;     /* PGOF_MAX_HEADER_BYTES */
    uint64_t max_headers;          /* PGOF_MAX_HEADERS */
    uint64_t max_connections;      /* PGOF_MAX_CONNECTIONS */
    uint64_t idle_timeout_ms;      /* PGOF_IDLE_TIMEOUT (seconds) */
    uint64_t request_timeout_ms;   /* PGOF_REQUEST_TIMEOUT (seconds) */
    uint64_t shutdown_grace_ms;    /* PGOF_SHUTDOWN_GRACE (seconds) */
    int log_level;                 /* PGOF_LOG_LEVEL */
    int metrics_need_key;          /* PGOF_METRICS_AUTH: none|merge */
    uint64_t retention_ms;         /* PGOF_RETENTION (e.g. 30d); 0 = off */
    /* PGOF_WORKER_THREADS, resolved: the size of libuv's threadpool. When
     * worker_threads_set is 0 the variable was unset and UV_THREADPOOL_SIZE
     * was set, and libuv's own reading of it stands. */
    unsigned worker_threads;
    int worker_threads_set;
    int worker_nice;               /* PGOF_WORKER_NICE: 0-19, default 5 */
} config;

/* The CPUs the collector may use: its affinity mask, or fewer under a
 * cgroup v2 CPU quota; 1 to 16. */
unsigned config_cpus(void);

/* The threadpool size when neither variable is set: 4 per CPU
 * (config_cpus), at least 4 and at most 64. */
unsigned config_default_worker_threads(void);

/*
 * Fills cfg from the environment. Returns 0, or UV_EINVAL with one line in
 * err (size errlen) naming the variable and what is wrong with it. The
 * strings in cfg point into the environment and stay valid for the process.
 */
int config_load(config *cfg, char *err, size_t errlen);

/*
 * Parses a bind address: "host:port", ":port" (every interface) or
 * "[v6addr]:port". Hosts are numeric addresses or "localhost". Returns 0 or
 * UV_EINVAL with the cause in err.
 */
int config_parse_bind(const char *s, struct sockaddr_storage *out, int *any,
                      char *err, size_t errlen);

/* Parses "123", "64K", "16M", "1G" (binary units). Returns 0 or UV_EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

/* Parses a positive duration in seconds ("30", "0.5") into ms. */
int config_parse_seconds(const char *s, uint64_t *out_ms);

/* Writes the effective configuration as one line (for the start-up log). */
void config_describe(const config *cfg, char *out, size_t outsz);

#endif /* COLLECTOR_CONFIG_H */
