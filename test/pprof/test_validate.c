/*
 * test_validate.c: every structural rule of src/pprof/validate.c, each with
 * a crafted profile that breaks exactly that rule, plus the CPU rule.
 */
#include "pprof/helpers.h"

typedef struct rule_case {
    enum bp_variant v;
    int code;
    const char *msg;
} rule_case;

static const rule_case rules[] = {
    {BP_NO_STRINGS, PPROF_EINVALID, "string table is empty"},
    {BP_FIRST_STRING, PPROF_EINVALID, "string table entry 0 is \"x\""},
    {BP_FUNC_NAME_RANGE, PPROF_EINVALID,
     "function 1 (id 2) has string index 12, but the string table has 12 entries"},
    {BP_NEG_STRING, PPROF_EINVALID, "sample type 1 has string index -1"},
    {BP_LABEL_STR_RANGE, PPROF_EINVALID, "sample 1 label 0 has string index 500"},
    {BP_NO_SAMPLE_TYPES, PPROF_EINVALID, "has 2 samples but no sample types"},
    {BP_VALUE_COUNT, PPROF_EINVALID, "sample 1 has 3 values, but the profile has 2 sample types"},
    {BP_MAPPING_ID0, PPROF_EINVALID, "mapping 0 has id 0, which is reserved"},
    {BP_FUNCTION_ID0, PPROF_EINVALID, "function 0 has id 0, which is reserved"},
    {BP_LOCATION_ID0, PPROF_EINVALID, "location 0 has id 0, which is reserved"},
    {BP_DUP_MAPPING, PPROF_EINVALID, "mappings 0 and 1 share id 1"},
    {BP_DUP_FUNCTION, PPROF_EINVALID, "functions 0 and 1 share id 1"},
    {BP_DUP_LOCATION, PPROF_EINVALID, "locations 0 and 1 share id 1"},
    {BP_SAMPLE_LOC_MISSING, PPROF_EINVALID, "sample 1 references location 99, which does not exist"},
    {BP_SAMPLE_LOC_ZERO, PPROF_EINVALID, "sample 0 references location 0, which does not exist"},
    {BP_LOC_MAPPING_MISSING, PPROF_EINVALID,
     "location 1 (id 2) references mapping 7, which does not exist"},
    {BP_LINE_FUNC_MISSING, PPROF_EINVALID,
     "location 0 (id 1) line 0 references function 42, which does not exist"},
    {BP_LINE_FUNC_ZERO, PPROF_EINVALID, "line 0 references function 0"},
    {BP_LABEL_EMPTY_KEY, PPROF_EINVALID, "sample 1 label 0 has an empty key"},
    {BP_LABEL_BOTH, PPROF_EINVALID, "sample 1 label 0 has both a string and a numeric value"},
    {BP_TWO_TIMES, PPROF_EINVALID, "concatenated profiles"},
};

static void test_each_rule(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        pprof_profile *p = (pprof_profile *)1;
        pprof_error err = {0, ""};
        int rc = decode_variant(rules[i].v, &p, &err);
        if (rc != rules[i].code)
            fail_msg("variant %d: code %d (%s), want %d", rules[i].v, rc, err.msg,
                     rules[i].code);
        assert_int_equal(err.code, rc);
        assert_null(p);
        assert_msg_has(err, rules[i].msg);
    }
}

static void test_valid_variants(void **state)
{
    static const enum bp_variant ok[] = {BP_VALID, BP_BIG_IDS, BP_HEAP, BP_THREE_TYPES,
                                         BP_SWAPPED_TYPES, BP_NO_PERIOD_TYPE,
                                         BP_ZERO_SAMPLE, BP_UNKNOWN_FIELDS};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        int rc = decode_variant(ok[i], &p, &err);
        if (rc)
            fail_msg("variant %d: %d %s", ok[i], rc, err.msg);
        assert_true(p->resolved);
        pprof_profile_free(p);
    }
}

/* Resolution: after validation, ids became table indices. */
static void test_ids_resolved(void **state)
{
    pprof_profile *p = NULL;
    const pprof__location *loc;

    (void)state;
    assert_int_equal(decode_variant(BP_BIG_IDS, &p, NULL), 0);
    /* sample 0 is [location 5, location 123456789] = indices 0, 1 */
    assert_int_equal(PPROF__AT(p->locids, uint64_t, 0), 0);
    assert_int_equal(PPROF__AT(p->locids, uint64_t, 1), 1);
    loc = p->locations.p;
    assert_int_equal(loc[0].mapping, 0);
    assert_int_equal(PPROF__AT(p->lines, pprof__line, loc[1].line_off).function, 1);
    pprof_profile_free(p);
}

static void test_cpu_rule(void **state)
{
    static const rule_case cpu[] = {
        {BP_HEAP, PPROF_ENOTCPU, "not a CPU profile: period type is space/bytes"},
        {BP_NO_PERIOD_TYPE, PPROF_ENOTCPU, "not a CPU profile: period type is missing"},
        {BP_THREE_TYPES, PPROF_ENOTCPU, "it has 3 sample types, expected 2"},
        {BP_SWAPPED_TYPES, PPROF_ENOTCPU,
         "sample type 0 is cpu/nanoseconds, expected samples/count"},
        {BP_VALID, 0, ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cpu) / sizeof(cpu[0]); i++) {
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        assert_int_equal(decode_variant(cpu[i].v, &p, NULL), 0);
        assert_int_equal(pprof_check_cpu(p, &err), cpu[i].code);
        assert_msg_has(err, cpu[i].msg);
        pprof_profile_free(p);
    }
}

static void test_cpu_rule_fixtures(void **state)
{
    pprof_error err = {0, ""};
    pprof_profile *p;
    size_t i;

    (void)state;
    for (i = 0; i < N_CPU_FIXTURES; i++) {
        p = decode_fixture(cpu_fixtures[i]);
        assert_int_equal(pprof_check_cpu(p, &err), 0);
        pprof_profile_free(p);
    }
    p = decode_fixture("bad/heap.pb.gz");
    assert_int_equal(pprof_check_cpu(p, &err), PPROF_ENOTCPU);
    assert_string_equal(err.msg, "not a CPU profile: period type is space/bytes");
    pprof_profile_free(p);
}

/* Wire-level faults are PPROF_EPROTO with the byte offset. */
static void test_wire_faults(void **state)
{
    static const struct {
        uint8_t bytes[12];
        size_t len;
        const char *msg;
    } cases[] = {
        {{0x00}, 1, "invalid field number 0 at byte 0"},
        {{0x12, 0x05, 0x0a}, 3, "sample at byte 0 needs 5 bytes, only 1 remain"},
        {{0x10, 0x01}, 2, "field sample at byte 0 has wire type 0, expected 2"},
        {{0x48, 0xff, 0xff}, 3, "truncated in a varint at byte 1"},
        {{0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 12,
         "varint longer than 10 bytes"},
        {{0xa3, 0x01}, 2, "unsupported wire type 3 at byte 0"},
        {{0x12, 0x02, 0x08, 0x80}, 4, "malformed sample at byte 0"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pprof_profile *p = NULL;
        pprof_error err = {0, ""};
        int rc = pprof_decode_mem(cases[i].bytes, cases[i].len, NULL, &p, &err);
        if (rc != PPROF_EPROTO)
            fail_msg("case %zu: %d %s", i, rc, err.msg);
        assert_null(p);
        assert_msg_has(err, cases[i].msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_rule),
        cmocka_unit_test(test_valid_variants),
        cmocka_unit_test(test_ids_resolved),
        cmocka_unit_test(test_cpu_rule),
        cmocka_unit_test(test_cpu_rule_fixtures),
        cmocka_unit_test(test_wire_faults),
    };
    test_timeout(120);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
