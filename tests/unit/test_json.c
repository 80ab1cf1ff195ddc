/* The byte buffer (core/util/buf.h) and the JSON writer (core/util/json.h). */
#include "util/json.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* ---- helpers ---------------------------------------------------------------------- */

/* The JSON text of one string value, in a static buffer. */
static const char *json_of(const char *s, size_t n)
{
    static char text[1024];
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_strn(&j, s, n);
    snprintf(text, sizeof text, "%s", b.oom || b.data == NULL ? "(failed)" : b.data);
    sp_buf_free(&b);
    return text;
}

#define JSON_OF(lit) json_of(lit, sizeof(lit) - 1)

static const char *double_of(double v)
{
    static char text[64];
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_double(&j, v);
    snprintf(text, sizeof text, "%s", b.oom || b.data == NULL ? "(failed)" : b.data);
    sp_buf_free(&b);
    return text;
}

/* ---- sp_buf ------------------------------------------------------------------------- */

TEST(buf_append_grows_and_terminates)
{
    sp_buf b;
    sp_buf_init(&b);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.len, 0);
    CHECK(!b.oom);

    sp_buf_append(&b, "abc", 3);
    REQUIRE(b.data != NULL);
    CHECK_EQ_INT(b.len, 3);
    CHECK_STR_EQ(b.data, "abc");
    sp_buf_append(&b, "", 0);
    CHECK_EQ_INT(b.len, 3);
    CHECK_STR_EQ(b.data, "abc");

    char big[10000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    sp_buf_append(&b, big, sizeof big);
    REQUIRE(!b.oom);
    CHECK_EQ_INT(b.len, 3 + sizeof big);
    CHECK(b.cap > b.len);
    CHECK(memcmp(b.data + 3, big, sizeof big) == 0);
    CHECK_EQ_INT(b.data[b.len], '\0');

    /* Embedded NULs are bytes like any other. */
    sp_buf_reset(&b);
    sp_buf_append(&b, "a\0b", 3);
    CHECK_EQ_INT(b.len, 3);
    CHECK(memcmp(b.data, "a\0b\0", 4) == 0);
    sp_buf_free(&b);
}

TEST(buf_reset_keeps_memory)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_buf_append(&b, "hello", 5);
    char *data = b.data;
    size_t cap = b.cap;
    sp_buf_reset(&b);
    CHECK_EQ_INT(b.len, 0);
    CHECK(b.data == data);
    CHECK_EQ_INT(b.cap, cap);
    CHECK_STR_EQ(b.data, "");
    sp_buf_append(&b, "x", 1);
    CHECK_STR_EQ(b.data, "x");
    sp_buf_free(&b);
    CHECK(b.data == NULL);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(b.cap, 0);
    sp_buf_free(&b); /* twice is fine */

    sp_buf_reset(&b); /* on a never-used buffer too */
    CHECK(b.data == NULL);
}

TEST(buf_appendf)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_buf_appendf(&b, "%d-%s", 42, "x");
    CHECK_STR_EQ(b.data, "42-x");
    sp_buf_appendf(&b, "%s", "");
    CHECK_STR_EQ(b.data, "42-x");
    CHECK_EQ_INT(b.len, 4);

    /* Longer than the room left: formatted again after growing. */
    sp_buf_appendf(&b, "[%0300d]", 7);
    REQUIRE(!b.oom);
    CHECK_EQ_INT(b.len, 4 + 302);
    CHECK(memcmp(b.data, "42-x[000", 8) == 0);
    CHECK_STR_EQ(b.data + b.len - 3, "07]");

    char *long_arg = malloc(5001);
    REQUIRE(long_arg != NULL);
    memset(long_arg, 'z', 5000);
    long_arg[5000] = '\0';
    sp_buf_reset(&b);
    sp_buf_appendf(&b, "<%s>", long_arg);
    CHECK_EQ_INT(b.len, 5002);
    CHECK_EQ_INT(b.data[0], '<');
    CHECK_EQ_INT(b.data[5000], 'z');
    CHECK_STR_EQ(b.data + 5001, ">");
    free(long_arg);
    sp_buf_free(&b);
}

TEST(buf_failure_is_sticky_until_reset)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_buf_append(&b, "ok", 2);
    /* A size that cannot be allocated fails without touching the contents. */
    sp_buf_append(&b, "", SIZE_MAX);
    CHECK(b.oom);
    CHECK_EQ_INT(b.len, 2);
    CHECK_STR_EQ(b.data, "ok");
    sp_buf_append(&b, "more", 4);
    sp_buf_appendf(&b, "%d", 1);
    CHECK_EQ_INT(b.len, 2);
    CHECK_STR_EQ(b.data, "ok");

    sp_buf_reset(&b);
    CHECK(!b.oom);
    sp_buf_append(&b, "again", 5);
    CHECK_STR_EQ(b.data, "again");

    sp_buf_free(&b);
    sp_buf_append(&b, "", SIZE_MAX - 1); /* also on an empty buffer */
    CHECK(b.oom);
    CHECK(b.data == NULL);
    sp_buf_free(&b);
}

/* ---- structure ------------------------------------------------------------------------ */

TEST(json_scalars)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_arr_open(&j);
    sp_json_int(&j, 0);
    sp_json_int(&j, -1);
    sp_json_int(&j, LLONG_MAX);
    sp_json_int(&j, LLONG_MIN);
    sp_json_uint(&j, 0);
    sp_json_uint(&j, ULLONG_MAX);
    sp_json_bool(&j, true);
    sp_json_bool(&j, false);
    sp_json_null(&j);
    sp_json_str(&j, NULL);
    sp_json_str(&j, "");
    sp_json_str(&j, "s");
    sp_json_arr_close(&j);
    CHECK(!b.oom);
    CHECK_STR_EQ(b.data, "[0,-1,9223372036854775807,-9223372036854775808,0,"
                         "18446744073709551615,true,false,null,null,\"\",\"s\"]");
    CHECK_EQ_INT(j.depth, 0);
    sp_buf_free(&b);
}

TEST(json_doubles)
{
    CHECK_STR_EQ(double_of(0.0), "0");
    CHECK_STR_EQ(double_of(-0.0), "-0");
    CHECK_STR_EQ(double_of(1.5), "1.5");
    CHECK_STR_EQ(double_of(-2.25), "-2.25");
    CHECK_STR_EQ(double_of(100.0), "100");
    CHECK_STR_EQ(double_of(0.1), "0.1");
    CHECK_STR_EQ(double_of(1.0 / 3.0), "0.3333333333333333");
    CHECK_STR_EQ(double_of(0.1 + 0.2), "0.30000000000000004");
    CHECK_STR_EQ(double_of(1e21), "1e+21");
    CHECK_STR_EQ(double_of(1e-7), "1e-07");
    CHECK_STR_EQ(double_of(DBL_MAX), "1.7976931348623157e+308");
    CHECK_STR_EQ(double_of(NAN), "null");
    CHECK_STR_EQ(double_of(INFINITY), "null");
    CHECK_STR_EQ(double_of(-INFINITY), "null");

    /* Whatever the text, it reads back exactly. */
    static const double hard[] = {DBL_MIN, DBL_MIN / 1e10, 5e-324, 123456789012345678.0,
                                  0.1 * 3, 9007199254740993.0, 2.0 / 3.0, 1e308 * 1.5};
    for (size_t i = 0; i < UNIT_COUNT(hard); i++) {
        const char *text = double_of(hard[i]);
        CHECK(strtod(text, NULL) == hard[i]);
        CHECK(strlen(text) <= 24);
    }
}

TEST(json_nesting_and_commas)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_json_key(&j, "a");
    sp_json_int(&j, 1);
    sp_json_key(&j, "b");
    sp_json_arr_open(&j);
    sp_json_int(&j, 1);
    sp_json_int(&j, 2);
    sp_json_obj_open(&j);
    sp_json_key(&j, "c");
    sp_json_null(&j);
    sp_json_obj_close(&j);
    sp_json_arr_open(&j);
    sp_json_arr_close(&j);
    sp_json_arr_close(&j);
    sp_json_key(&j, "d");
    sp_json_obj_open(&j);
    sp_json_obj_close(&j);
    sp_json_key(&j, "e");
    sp_json_arr_open(&j);
    sp_json_arr_open(&j);
    sp_json_arr_open(&j);
    sp_json_str(&j, "x");
    sp_json_arr_close(&j);
    sp_json_arr_open(&j);
    sp_json_arr_close(&j);
    sp_json_arr_close(&j);
    sp_json_arr_close(&j);
    sp_json_key(&j, "f");
    sp_json_obj_open(&j);
    sp_json_key(&j, "g");
    sp_json_obj_open(&j);
    sp_json_key(&j, "h");
    sp_json_bool(&j, true);
    sp_json_key(&j, "i");
    sp_json_bool(&j, false);
    sp_json_obj_close(&j);
    sp_json_obj_close(&j);
    sp_json_obj_close(&j);
    CHECK(!b.oom);
    CHECK_EQ_INT(j.depth, 0);
    CHECK_STR_EQ(b.data, "{\"a\":1,\"b\":[1,2,{\"c\":null},[]],\"d\":{},\"e\":[[[\"x\"],[]]],"
                         "\"f\":{\"g\":{\"h\":true,\"i\":false}}}");
    sp_buf_free(&b);
}

TEST(json_empty_containers)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_json_obj_close(&j);
    CHECK_STR_EQ(b.data, "{}");
    sp_buf_reset(&b);
    sp_json_init(&j, &b);
    sp_json_arr_open(&j);
    sp_json_arr_close(&j);
    CHECK_STR_EQ(b.data, "[]");
    sp_buf_free(&b);
}

TEST(json_appends_after_existing_content)
{
    /* A log line: text prefix, then a document; then the buffer is reused. */
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_buf_append(&b, "access ", 7);
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_json_key(&j, "status");
    sp_json_int(&j, 200);
    sp_json_obj_close(&j);
    sp_buf_append(&b, "\n", 1);
    CHECK_STR_EQ(b.data, "access {\"status\":200}\n");

    sp_buf_reset(&b);
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_json_key(&j, "status");
    sp_json_int(&j, 404);
    sp_json_obj_close(&j);
    CHECK_STR_EQ(b.data, "{\"status\":404}");
    sp_buf_free(&b);
}

TEST(json_depth_limit)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    for (int k = 0; k < SP_JSON_MAX_DEPTH; k++) {
        sp_json_arr_open(&j);
        sp_json_int(&j, k);
    }
    CHECK(!b.oom);
    CHECK_EQ_INT(j.depth, SP_JSON_MAX_DEPTH);
    for (int k = 0; k < SP_JSON_MAX_DEPTH; k++)
        sp_json_arr_close(&j);
    CHECK(!b.oom);
    CHECK_EQ_INT(j.depth, 0);
    CHECK_EQ_INT(b.data[0], '[');
    CHECK_EQ_INT(b.data[1], '0');
    CHECK_EQ_INT(b.data[2], ',');
    char tail[2 + SP_JSON_MAX_DEPTH + 1] = "31"; /* ...[30,[31]]...] */
    memset(tail + 2, ']', SP_JSON_MAX_DEPTH);
    tail[sizeof tail - 1] = '\0';
    REQUIRE(b.len > sizeof tail);
    CHECK_STR_EQ(b.data + b.len - (sizeof tail - 1), tail);
    CHECK_EQ_INT(b.data[b.len - sizeof tail], '[');

    /* One deeper is a bug in the caller: the output is marked failed. */
    sp_buf_reset(&b);
    sp_json_init(&j, &b);
    for (int k = 0; k <= SP_JSON_MAX_DEPTH; k++)
        sp_json_obj_open(&j);
    CHECK(b.oom);
    CHECK_EQ_INT(j.depth, SP_JSON_MAX_DEPTH);

    /* So is closing what was never opened. */
    sp_buf_reset(&b);
    sp_json_init(&j, &b);
    sp_json_arr_close(&j);
    CHECK(b.oom);
    CHECK_EQ_INT(j.depth, 0);
    sp_buf_free(&b);
}

TEST(json_writes_nothing_after_failure)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_arr_open(&j);
    b.oom = true;
    sp_json_int(&j, 1);
    sp_json_str(&j, "x");
    sp_json_arr_close(&j);
    CHECK_EQ_INT(b.len, 1);
    CHECK_STR_EQ(b.data, "[");
    sp_buf_free(&b);
}

/* ---- strings ------------------------------------------------------------------------ */

TEST(json_string_escapes)
{
    CHECK_STR_EQ(JSON_OF(""), "\"\"");
    CHECK_STR_EQ(JSON_OF("plain text"), "\"plain text\"");
    CHECK_STR_EQ(JSON_OF("\""), "\"\\\"\"");
    CHECK_STR_EQ(JSON_OF("\\"), "\"\\\\\"");
    CHECK_STR_EQ(JSON_OF("/path/x?y=1&z='2'"), "\"/path/x?y=1&z='2'\"");
    CHECK_STR_EQ(JSON_OF("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    CHECK_STR_EQ(JSON_OF("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\"");
    CHECK_STR_EQ(JSON_OF("\x7f"), "\"\\u007f\"");
    CHECK_STR_EQ(JSON_OF("\x1b[31mred"), "\"\\u001b[31mred\"");
    CHECK_STR_EQ(JSON_OF("a\0b"), "\"a\\u0000b\"");
    CHECK_STR_EQ(JSON_OF("~ !#$%&()*+,-.:;<=>?@[]^_`{|}"), "\"~ !#$%&()*+,-.:;<=>?@[]^_`{|}\"");
}

TEST(json_every_control_character)
{
    for (int c = 0; c < 0x20; c++) {
        char in = (char)c, expect[16];
        switch (c) {
        case '\b': snprintf(expect, sizeof expect, "\"\\b\""); break;
        case '\f': snprintf(expect, sizeof expect, "\"\\f\""); break;
        case '\n': snprintf(expect, sizeof expect, "\"\\n\""); break;
        case '\r': snprintf(expect, sizeof expect, "\"\\r\""); break;
        case '\t': snprintf(expect, sizeof expect, "\"\\t\""); break;
        default: snprintf(expect, sizeof expect, "\"\\u%04x\"", (unsigned)c);
        }
        CHECK_STR_EQ(json_of(&in, 1), expect);
    }
    /* Everything else in ASCII passes, apart from '"', '\\' and DEL. */
    for (int c = 0x20; c < 0x7f; c++) {
        if (c == '"' || c == '\\')
            continue;
        char in = (char)c, expect[4] = {'"', (char)c, '"', '\0'};
        CHECK_STR_EQ(json_of(&in, 1), expect);
    }
}

TEST(json_strn_uses_the_length)
{
    CHECK_STR_EQ(json_of("abcdef", 3), "\"abc\"");
    CHECK_STR_EQ(json_of("abc", 0), "\"\"");
    CHECK_STR_EQ(json_of("\xe2\x82\xac", 2), "\"\\ufffd\""); /* cut inside a sequence */
    CHECK_STR_EQ(json_of("x\0\0", 3), "\"x\\u0000\\u0000\"");
}

TEST(json_utf8_valid_passes_through)
{
    static const char *const valid[] = {
        "\xc2\x80",         /* U+0080, the first two-byte */
        "\xc3\xa9",         /* é */
        "\xdf\xbf",         /* U+07FF */
        "\xe0\xa0\x80",     /* U+0800, the first three-byte */
        "\xe2\x82\xac",     /* € */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above */
        "\xef\xbf\xbd",     /* U+FFFD itself */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000, the first four-byte */
        "\xf0\x9f\x98\x80", /* 😀 */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last */
        "\xe2\x80\xa8",     /* U+2028, valid JSON as is */
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xd0\xbf\xd1\x80\xd0\xb8",
    };
    for (size_t i = 0; i < UNIT_COUNT(valid); i++) {
        char expect[128];
        snprintf(expect, sizeof expect, "\"%s\"", valid[i]);
        CHECK_STR_EQ(json_of(valid[i], strlen(valid[i])), expect);
    }
}

#define R "\\ufffd"

TEST(json_utf8_invalid_replaced)
{
    /* Each maximal ill-formed subsequence becomes one U+FFFD (Unicode 3.9). */
    CHECK_STR_EQ(JSON_OF("\x80"), "\"" R "\"");
    CHECK_STR_EQ(JSON_OF("a\x80z"), "\"a" R "z\"");
    CHECK_STR_EQ(JSON_OF("\x80\xbf"), "\"" R R "\"");
    CHECK_STR_EQ(JSON_OF("\xc0\x80"), "\"" R R "\"");              /* overlong NUL */
    CHECK_STR_EQ(JSON_OF("\xc1\xbf"), "\"" R R "\"");              /* overlong */
    CHECK_STR_EQ(JSON_OF("\xe0\x80\x80"), "\"" R R R "\"");        /* overlong */
    CHECK_STR_EQ(JSON_OF("\xe0\x9f\xbf"), "\"" R R R "\"");        /* overlong */
    CHECK_STR_EQ(JSON_OF("\xed\xa0\x80"), "\"" R R R "\"");        /* surrogate D800 */
    CHECK_STR_EQ(JSON_OF("\xed\xbf\xbf"), "\"" R R R "\"");        /* surrogate DFFF */
    CHECK_STR_EQ(JSON_OF("\xf0\x80\x80\x80"), "\"" R R R R "\"");  /* overlong */
    CHECK_STR_EQ(JSON_OF("\xf0\x8f\xbf\xbf"), "\"" R R R R "\"");  /* overlong */
    CHECK_STR_EQ(JSON_OF("\xf4\x90\x80\x80"), "\"" R R R R "\"");  /* U+110000 */
    CHECK_STR_EQ(JSON_OF("\xf5\x80\x80\x80"), "\"" R R R R "\"");
    CHECK_STR_EQ(JSON_OF("\xf8\x88\x80\x80\x80"), "\"" R R R R R "\"");
    CHECK_STR_EQ(JSON_OF("\xfe\xff"), "\"" R R "\"");

    /* Truncated sequences: one U+FFFD for the whole valid prefix. */
    CHECK_STR_EQ(JSON_OF("\xc3"), "\"" R "\"");
    CHECK_STR_EQ(JSON_OF("\xc3" "A"), "\"" R "A\"");
    CHECK_STR_EQ(JSON_OF("\xe2\x82"), "\"" R "\"");
    CHECK_STR_EQ(JSON_OF("\xe2\x82" "A"), "\"" R "A\"");
    CHECK_STR_EQ(JSON_OF("\xf0\x9f\x98"), "\"" R "\"");
    CHECK_STR_EQ(JSON_OF("\xf0\x9f\x98\xe2\x82\xac"), "\"" R "\xe2\x82\xac\"");
    CHECK_STR_EQ(JSON_OF("\xe2\x82\n"), "\"" R "\\n\"");
    CHECK_STR_EQ(JSON_OF("\xe2\x82\""), "\"" R "\\\"\"");

    /* Unicode 15, table 3-8. */
    CHECK_STR_EQ(JSON_OF("\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64"),
                 "\"a" R R R "b" R "c" R R "d\"");

    /* Valid text around invalid bytes is kept. */
    CHECK_STR_EQ(JSON_OF("caf\xc3\xa9\xff" "caf\xc3\xa9"), "\"caf\xc3\xa9" R "caf\xc3\xa9\"");
}

TEST(json_keys_are_escaped)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_json_key(&j, "x-\"odd\"\n\xff");
    sp_json_str(&j, "v");
    sp_json_key(&j, "");
    sp_json_int(&j, 0);
    sp_json_obj_close(&j);
    CHECK_STR_EQ(b.data, "{\"x-\\\"odd\\\"\\n" R "\":\"v\",\"\":0}");
    sp_buf_free(&b);
}

TEST(json_long_string)
{
    /* Longer than the buffer's first allocation, with escapes throughout. */
    char in[3000];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = i % 100 == 99 ? '\n' : 'x';
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_strn(&j, in, sizeof in);
    REQUIRE(!b.oom);
    CHECK_EQ_INT(b.len, 2 + sizeof in + 30); /* 30 newlines, one extra byte each */
    CHECK_EQ_INT(b.data[0], '"');
    CHECK(memcmp(b.data + 100, "\\n", 2) == 0);
    CHECK_EQ_INT(b.data[b.len - 1], '"');
    sp_buf_free(&b);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(buf_append_grows_and_terminates),
        UNIT(buf_reset_keeps_memory),
        UNIT(buf_appendf),
        UNIT(buf_failure_is_sticky_until_reset),
        UNIT(json_scalars),
        UNIT(json_doubles),
        UNIT(json_nesting_and_commas),
        UNIT(json_empty_containers),
        UNIT(json_appends_after_existing_content),
        UNIT(json_depth_limit),
        UNIT(json_writes_nothing_after_failure),
        UNIT(json_string_escapes),
        UNIT(json_every_control_character),
        UNIT(json_strn_uses_the_length),
        UNIT(json_utf8_valid_passes_through),
        UNIT(json_utf8_invalid_replaced),
        UNIT(json_keys_are_escaped),
        UNIT(json_long_string),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
