/*
 * A small streaming JSON writer for /stats and JSON logs.
 *
 * It writes straight into an sp_buf and keeps only what it needs to place commas: one
 * flag per open container. It does not check that keys and values alternate properly;
 * callers write fixed shapes. What it does guarantee is that any bytes given to it as
 * strings come out as valid JSON text: log fields carry client-controlled Host headers,
 * paths and SNI names, which may be anything.
 *
 *     sp_json j;
 *     sp_json_init(&j, &buf);
 *     sp_json_obj_open(&j);
 *     sp_json_key(&j, "route"); sp_json_str(&j, "api");
 *     sp_json_key(&j, "bytes"); sp_json_uint(&j, 1234);
 *     sp_json_obj_close(&j);          ->  {"route":"api","bytes":1234}
 *
 * Misuse (nesting deeper than SP_JSON_MAX_DEPTH, closing more than was opened) sets the
 * buffer's sticky failure flag (out->oom), like running out of memory: the output is not
 * to be used.
 */
#ifndef SP_UTIL_JSON_H
#define SP_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

#define SP_JSON_MAX_DEPTH 32

typedef struct sp_json {
    sp_buf *out;
    int depth;                                 /* open containers */
    bool need_comma[SP_JSON_MAX_DEPTH + 1];    /* per level; [0] is the top level */
} sp_json;

/* Starts writing at the end of out (which is not cleared). */
void sp_json_init(sp_json *j, sp_buf *out);

void sp_json_obj_open(sp_json *j);
void sp_json_obj_close(sp_json *j);
void sp_json_arr_open(sp_json *j);
void sp_json_arr_close(sp_json *j);

/* The next value belongs to key k (escaped like a string). */
void sp_json_key(sp_json *j, const char *k);

/* A string value. Escapes '"', '\\', control characters and DEL (\n, \r, \t, \b, \f
 * in short form, the rest as \u00XX); passes valid UTF-8 through; replaces each
 * ill-formed sequence (stray continuation bytes, overlong forms, surrogates, code points
 * above U+10FFFF, truncated sequences) with one \ufffd, as the Unicode standard
 * recommends. A NULL s writes null. */
void sp_json_str(sp_json *j, const char *s);
void sp_json_strn(sp_json *j, const char *s, size_t n);

void sp_json_int(sp_json *j, long long v);
void sp_json_uint(sp_json *j, unsigned long long v);

/* The shortest of %.15g / %.17g that reads back as v; NaN and infinities -> null. */
void sp_json_double(sp_json *j, double v);

void sp_json_bool(sp_json *j, bool v);
void sp_json_null(sp_json *j);

#endif
