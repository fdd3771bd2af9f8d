/*
 * test_quote.c: src/common/quote.c, the one quoting of untrusted bytes for
 * the engine's error sentences and the collector's log lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common/quote.h"

static void test_printable_passes(void **state)
{
    char out[64];
    (void)state;
    assert_string_equal(quote_bytes(out, sizeof out, "/v1/submit?x=1", 14, 200),
                        "/v1/submit?x=1");
}

static void test_escapes(void **state)
{
    char out[64];
    (void)state;
    /* Quotes, backslashes, control and non-ASCII bytes become \xNN. */
    assert_string_equal(quote_bytes(out, sizeof out, "a\"b\\c\n\x01\xff", 8, 200),
                        "a\\x22b\\x5cc\\x0a\\x01\\xff");
}

static void test_truncation(void **state)
{
    char out[64], small[8];
    (void)state;
    /* Past max: cut, marked with "...". */
    assert_string_equal(quote_bytes(out, sizeof out, "abcdefgh", 8, 3), "abc...");
    /* Past the buffer: what fits, never half an escape, "..." when it fits,
     * always terminated. */
    assert_string_equal(quote_bytes(small, sizeof small, "abcdefghij", 10, 200), "abcdefg");
    assert_string_equal(quote_bytes(small, sizeof small, "abcd\nef", 7, 200), "abcd...");
    /* No room at all: out is left alone. */
    small[0] = 'z';
    assert_ptr_equal(quote_bytes(small, 0, "abc", 3, 200), small);
    assert_int_equal(small[0], 'z');
    /* Empty input. */
    assert_string_equal(quote_bytes(out, sizeof out, "", 0, 200), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printable_passes),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
