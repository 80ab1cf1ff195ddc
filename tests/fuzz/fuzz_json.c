/*
 * libFuzzer target for the string escaping in core/util/json.h: log lines carry
 * client-controlled bytes (Host, path, SNI), so whatever goes in, a valid JSON string
 * must come out, and valid UTF-8 must come back unchanged.
 *
 * The output is decoded by an independent, simpler decoder; the first byte of the input
 * also picks a nesting depth so the comma logic runs around the string.
 */
#include "util/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENSURE(cond)                                                                    \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* Length of the well-formed UTF-8 character at s, or 0. Decodes the code point and checks
 * its range, rather than checking byte ranges as the writer does. */
static size_t utf8_char(const uint8_t *s, size_t n)
{
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint8_t c = s[0];
    size_t len = c < 0x80 ? 1 : c < 0xc0 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    if (len == 1)
        return 1;
    uint32_t cp = c & (0x7fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3fu);
    }
    if (cp < min_for_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char(s + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* Decodes the JSON string at *at (which must start with '"') into out; returns the number
 * of \ufffd escapes. Aborts on anything that is not valid JSON or not what the writer is
 * documented to produce. */
static size_t decode_string(const uint8_t *s, size_t n, size_t *at, uint8_t *out,
                            size_t *out_len)
{
    size_t i = *at, o = 0, replaced = 0;
    ENSURE(i < n && s[i] == '"');
    i++;
    for (;;) {
        ENSURE(i < n);
        uint8_t c = s[i];
        if (c == '"') {
            i++;
            break;
        }
        ENSURE(c >= 0x20 && c != 0x7f);
        if (c >= 0x80) {
            size_t len = utf8_char(s + i, n - i);
            ENSURE(len != 0);
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
            continue;
        }
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        ENSURE(i + 1 < n);
        uint8_t e = s[i + 1];
        const char *simple = "\"\\bfnrt", *value = "\"\\\b\f\n\r\t";
        const char *hit = memchr(simple, e, 7);
        if (e != 0 && hit != NULL) {
            out[o++] = (uint8_t)value[hit - simple];
            i += 2;
            continue;
        }
        ENSURE(e == 'u' && i + 6 <= n);
        if (memcmp(s + i, "\\ufffd", 6) == 0) {
            replaced++;
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            unsigned v;
            char hex[5] = {(char)s[i + 2], (char)s[i + 3], (char)s[i + 4], (char)s[i + 5], 0};
            ENSURE(strspn(hex, "0123456789abcdef") == 4 && sscanf(hex, "%4x", &v) == 1);
            /* Only what has no short form: other controls and DEL. */
            ENSURE((v < 0x20 && !strchr("\b\f\n\r\t", (int)v)) || v == 0x7f || v == 0);
            out[o++] = (uint8_t)v;
        }
        i += 6;
    }
    *at = i;
    *out_len = o;
    return replaced;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned depth = size > 0 ? data[0] % 4 : 0;
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    for (unsigned d = 0; d < depth; d++) {
        sp_json_arr_open(&j);
        sp_json_int(&j, d);
    }
    sp_json_strn(&j, (const char *)data, size);
    for (unsigned d = 0; d < depth; d++)
        sp_json_arr_close(&j);
    ENSURE(!b.oom && j.depth == 0);
    ENSURE(b.data[b.len] == '\0');

    /* Skip the "[0,[1," framing, then the string must be all that is left but "]]". */
    const uint8_t *text = (const uint8_t *)b.data;
    size_t at = 0;
    for (unsigned d = 0; d < depth; d++) {
        char frame[16];
        int n = snprintf(frame, sizeof frame, "[%u,", d);
        ENSURE(memcmp(text + at, frame, (size_t)n) == 0);
        at += (size_t)n;
    }
    /* Each input byte becomes at most 6 bytes of output, or one \ufffd (6) per byte. */
    ENSURE(b.len <= 2 + 6 * size + 4 * depth);
    uint8_t *decoded = malloc(3 * size + 1);
    ENSURE(decoded != NULL);
    size_t decoded_len = 0;
    size_t replaced = decode_string(text, b.len, &at, decoded, &decoded_len);
    for (unsigned d = 0; d < depth; d++)
        ENSURE(at < b.len && text[at++] == ']');
    ENSURE(at == b.len);

    if (valid_utf8(data, size)) {
        ENSURE(replaced == 0); /* a literal U+FFFD passes through as UTF-8 */
        ENSURE(decoded_len == size && memcmp(decoded, data, size) == 0);
    } else {
        ENSURE(replaced > 0 && replaced <= size);
    }
    free(decoded);
    sp_buf_free(&b);
    return 0;
}
