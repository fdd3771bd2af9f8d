/*
 * test_config.c: unit tests for src/collector/config.c (PGOF_* parsing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/collector/config.c"

static const char *const vars[] = {
    "PGOF_BIND_ADDRESS", "PGOF_DIRECTORY", "PGOF_SUBMIT_AUTH_KEYS_FILE",
    "PGOF_MERGE_AUTH_KEYS_FILE", "PGOF_MAX_BODY_BYTES", "PGOF_MAX_PROFILE_BYTES",
    "PGOF_MAX_HEADER_BYTES", "PGOF_MAX_HEADERS", "PGOF_MAX_CONNECTIONS", "PGOF_IDLE_TIMEOUT",
    "PGOF_REQUEST_TIMEOUT", "PGOF_SHUTDOWN_GRACE", "PGOF_LOG_LEVEL", "PGOF_METRICS_AUTH",
    "PGOF_WORKER_THREADS", "UV_THREADPOOL_SIZE", "PGOF_WORKER_NICE",
};

static int clear_env(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void test_defaults(void **state) {
    (void)state;
    config cfg;
    char err[CONFIG_ERR_MAX];
    assert_int_equal(config_load(&cfg, err, sizeof err), 0);
    assert_string_equal(cfg.bind_address, "127.0.0.1:8080");
    assert_string_equal(cfg.directory, "./profiles");
    assert_string_equal(cfg.submit_keys_file, "/secret/submit_keys");
    assert_string_equal(cfg.merge_keys_file, "/secret/merge_keys");
    assert_int_equal(cfg.bind_addr.ss_family, AF_INET);
    assert_int_equal(cfg.max_profile_bytes, (uint64_t)256 << 20);
    assert_int_equal(cfg.metrics_need_key, 0);
    assert_int_equal(cfg.log_level, LOG_INFO);
}

static void test_bind_forms(void **state) {
    (void)state;
    struct sockaddr_storage ss;
    int any;
    char err[128];
    assert_int_equal(config_parse_bind(":8080", &ss, &any, err, sizeof err), 0);
    assert_int_equal(any, 1);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(config_parse_bind("[::1]:9", &ss, &any, err, sizeof err), 0);
    assert_int_equal(any, 0);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9);
    assert_int_equal(config_parse_bind("localhost:1", &ss, &any, err, sizeof err), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(config_parse_bind("0.0.0.0:0", &ss, &any, err, sizeof err), 0);
    assert_int_equal(config_parse_bind("1.2.3:80", &ss, &any, err, sizeof err), UV_EINVAL);
    assert_int_equal(config_parse_bind("example.com:80", &ss, &any, err, sizeof err), UV_EINVAL);
    assert_int_equal(config_parse_bind("::1:80", &ss, &any, err, sizeof err), UV_EINVAL);
    assert_int_equal(config_parse_bind("[::1]80", &ss, &any, err, sizeof err), UV_EINVAL);
    assert_int_equal(config_parse_bind("1.2.3.4:65536", &ss, &any, err, sizeof err), UV_EINVAL);
    assert_int_equal(config_parse_bind("1.2.3.4:", &ss, &any, err, sizeof err), UV_EINVAL);
    assert_int_equal(config_parse_bind("8080", &ss, &any, err, sizeof err), UV_EINVAL);
}

static void test_sizes_and_seconds(void **state) {
    (void)state;
    uint64_t v;
    assert_int_equal(config_parse_size("123", &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(config_parse_size("64K", &v), 0);
    assert_int_equal(v, 64 << 10);
    assert_int_equal(config_parse_size("16MiB", &v), 0);
    assert_int_equal(v, 16 << 20);
    assert_int_equal(config_parse_size("1g", &v), 0);
    assert_int_equal(v, 1 << 30);
    assert_int_equal(config_parse_size("-1", &v), UV_EINVAL);
    assert_int_equal(config_parse_size("1T", &v), UV_EINVAL);
    assert_int_equal(config_parse_size("", &v), UV_EINVAL);
    assert_int_equal(config_parse_size("99999999999999999999", &v), UV_EINVAL);
    assert_int_equal(config_parse_seconds("0.5", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(config_parse_seconds("30", &v), 0);
    assert_int_equal(v, 30000);
    assert_int_equal(config_parse_seconds("0", &v), UV_EINVAL);
    assert_int_equal(config_parse_seconds("nan", &v), UV_EINVAL);
    assert_int_equal(config_parse_seconds("1s", &v), UV_EINVAL);
}

static void test_errors_name_the_variable(void **state) {
    (void)state;
    config cfg;
    char err[CONFIG_ERR_MAX];
    setenv("PGOF_MAX_HEADERS", "1", 1);
    assert_int_equal(config_load(&cfg, err, sizeof err), UV_EINVAL);
    assert_non_null(strstr(err, "PGOF_MAX_HEADERS"));
    unsetenv("PGOF_MAX_HEADERS");
    setenv("PGOF_SHUTDOWN_GRACE", "x", 1);
    assert_int_equal(config_load(&cfg, err, sizeof err), UV_EINVAL);
    assert_non_null(strstr(err, "PGOF_SHUTDOWN_GRACE"));
    unsetenv("PGOF_SHUTDOWN_GRACE");
    setenv("PGOF_METRICS_AUTH", "merge", 1);
    setenv("PGOF_LOG_LEVEL", "debug", 1);
    assert_int_equal(config_load(&cfg, err, sizeof err), 0);
    assert_int_equal(cfg.metrics_need_key, 1);
    assert_int_equal(cfg.log_level, LOG_DEBUG);
}

/* Sets var to value (NULL: leaves the environment) and loads, which must work. */
static config load_ok(const char *var, const char *value) {
    config cfg;
    char err[CONFIG_ERR_MAX];
    if (var != NULL)
        setenv(var, value, 1);
    assert_int_equal(config_load(&cfg, err, sizeof err), 0);
    return cfg;
}

/* Every value in bad[] stops config_load with a line naming var and needle. */
static void assert_refused(const char *var, const char *const *bad, size_t n,
                           const char *needle) {
    config cfg;
    char err[CONFIG_ERR_MAX];
    for (size_t i = 0; i < n; i++) {
        setenv(var, bad[i], 1);
        assert_int_equal(config_load(&cfg, err, sizeof err), UV_EINVAL);
        assert_non_null(strstr(err, var));
        assert_non_null(strstr(err, needle));
    }
}

static void test_worker_threads(void **state) {
    (void)state;
    unsigned want = config_default_worker_threads();

    /* Unset: 4 per CPU, and main() hands it to libuv. */
    assert_int_equal(load_ok(NULL, NULL).worker_threads, want);
    assert_int_equal(load_ok(NULL, NULL).worker_threads_set, 1);
    assert_true(want >= 4 && want <= 64 && want % 4 == 0);
    assert_true(want <= 4 * uv_available_parallelism());
    assert_int_equal(want, 4 * config_cpus());
    assert_true(config_cpus() >= 1 && config_cpus() <= 16);
    assert_true(config_cpus() <= uv_available_parallelism());
    /* libuv's own variable, set by the operator, stands... */
    assert_int_equal(load_ok("UV_THREADPOOL_SIZE", "3").worker_threads, 3);
    assert_int_equal(load_ok(NULL, NULL).worker_threads_set, 0);
    /* ...as libuv reads it: garbage is 1 thread, -1 wraps to the 1024 cap. */
    assert_int_equal(load_ok("UV_THREADPOOL_SIZE", "lots").worker_threads, 1);
    assert_int_equal(load_ok("UV_THREADPOOL_SIZE", "-1").worker_threads, 1024);
    /* Ours wins over it. */
    assert_int_equal(load_ok("PGOF_WORKER_THREADS", "12").worker_threads, 12);
    assert_int_equal(load_ok(NULL, NULL).worker_threads_set, 1);
    assert_int_equal(load_ok("PGOF_WORKER_THREADS", "1024").worker_threads, 1024);
    static const char *const bad[] = {"0", "1025", "8K", "-1", "x", "4.5"};
    assert_refused("PGOF_WORKER_THREADS", bad, sizeof bad / sizeof bad[0], "from 1 to 1024");
}

static void test_worker_nice(void **state) {
    (void)state;
    assert_int_equal(load_ok(NULL, NULL).worker_nice, 5);
    assert_int_equal(load_ok("PGOF_WORKER_NICE", "0").worker_nice, 0);
    assert_int_equal(load_ok("PGOF_WORKER_NICE", "19").worker_nice, 19);
    static const char *const bad[] = {"20", "-1", "x", "5K", "1.5"};
    assert_refused("PGOF_WORKER_NICE", bad, sizeof bad / sizeof bad[0], "from 0 to 19");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_bind_forms, clear_env),
        cmocka_unit_test_setup(test_sizes_and_seconds, clear_env),
        cmocka_unit_test_setup(test_errors_name_the_variable, clear_env),
        cmocka_unit_test_setup(test_worker_threads, clear_env),
        cmocka_unit_test_setup(test_worker_nice, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
