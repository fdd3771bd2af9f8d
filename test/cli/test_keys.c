/*
 * test_keys.c: src/cli/keys.c: where a key comes from, in which order, how a
 * key file is read, and that no message ever contains the key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "cli/keys.c"

#define SECRET "s3cr3t-KEY"

static char dir[] = "/tmp/pgof-test-keys.XXXXXX";

static const char *write_file(const char *name, const char *content)
{
    static char path[256];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    unsetenv("T_KEY_FILE");
    unsetenv("T_KEY");
    return 0;
}

static void resolve_ok(const char *flag, const char *want_key, const char *want_source)
{
    cli_key key = {0};
    char err[CLI_ERR_MAX] = "";
    assert_int_equal(cli_key_resolve(flag, "T_KEY_FILE", "T_KEY", &key, err), 0);
    assert_string_equal(key.value, want_key);
    if (!strstr(key.source, want_source))
        fail_msg("source \"%s\" lacks \"%s\"", key.source, want_source);
    cli_key_clear(&key);
    assert_null(key.value);
    cli_key_clear(&key); /* twice is fine */
}

static void resolve_fails(const char *flag, int code, const char *why)
{
    cli_key key = {0};
    char err[CLI_ERR_MAX] = "";
    assert_int_equal(cli_key_resolve(flag, "T_KEY_FILE", "T_KEY", &key, err), code);
    assert_null(key.value);
    if (!strstr(err, why))
        fail_msg("message \"%s\" lacks \"%s\"", err, why);
    if (strstr(err, SECRET))
        fail_msg("message \"%s\" contains the key", err);
    cli_key_clear(&key);
}

static void test_sources_in_order(void **state)
{
    const char *p;
    (void)state;
    resolve_fails(NULL, CLI_ENOENT, "set T_KEY_FILE");
    setenv("T_KEY", SECRET, 1);
    resolve_ok(NULL, SECRET, "T_KEY");
    setenv("T_KEY", "", 1); /* empty counts as unset */
    p = write_file("k1", "  " SECRET "\r\n");
    setenv("T_KEY_FILE", p, 1);
    resolve_ok(NULL, SECRET, "T_KEY_FILE (");
    setenv("T_KEY", "other", 1);
    resolve_fails(NULL, CLI_EINVAL, "both T_KEY_FILE and T_KEY are set");
    /* The flag wins over both variables. */
    p = write_file("k2", "flagkey\nsecond line ignored\n");
    resolve_ok(p, "flagkey", "--key-file ");
    /* The collector's keys-file rule: comments and blank lines skipped,
     * white space trimmed, the first key used. */
    p = write_file("k3", "# rotated 2026-11\n\n   \t" SECRET " \r\nnext-key\n");
    resolve_ok(p, SECRET, "--key-file ");
    p = write_file("k4", "#" SECRET "\nreal");
    resolve_ok(p, "real", "--key-file ");
}

static void test_bad_key_files(void **state)
{
    char big[5000];
    (void)state;
    resolve_fails("/nonexistent/key", CLI_EIO, "cannot open the key file from --key-file");
    resolve_fails(write_file("e", ""), CLI_EINVAL, "holds no key");
    resolve_fails(write_file("ws", " \n\t\n"), CLI_EINVAL, "holds no key");
    resolve_fails(write_file("cm", "# only a comment\n\n  # another\n"), CLI_EINVAL, "holds no key");
    resolve_fails(write_file("sp", SECRET " more\n"), CLI_EINVAL, "spaces or control");
    resolve_fails(write_file("ctl", SECRET "\x01\n"), CLI_EINVAL, "spaces or control");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    resolve_fails(write_file("big", big), CLI_EINVAL, "larger than 4096 bytes");
    setenv("T_KEY", "bad key", 1);
    resolve_fails(NULL, CLI_EINVAL, "from T_KEY contains spaces");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_sources_in_order, setup),
        cmocka_unit_test_setup(test_bad_key_files, setup),
    };
    int rc;
    alarm(30);
    if (!mkdtemp(dir))
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? rc : 1;
}
