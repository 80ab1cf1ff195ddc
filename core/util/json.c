#include "util/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sp_json_init(sp_json *j, sp_buf *out)
{
    j->out = out;
    j->depth = 0;
    memset(j->need_comma, 0, sizeof j->need_comma);
}

/* Before any value or key: the comma that separates it from the previous one. A key
 * clears its level's flag, so its value is not separated from it. */
static void separate(sp_json *j)
{
    if (j->need_comma[j->depth])
        sp_buf_append(j->out, ",", 1);
    j->need_comma[j->depth] = true;
}

static void open_container(sp_json *j, char bracket)
{
    if (j->depth == SP_JSON_MAX_DEPTH) {
        j->out->oom = true;
        return;
    }
    separate(j);
    sp_buf_append(j->out, &bracket, 1);
    j->need_comma[++j->depth] = false;
}

static void close_container(sp_json *j, char bracket)
{
    if (j->depth == 0) {
        j->out->oom = true;
        return;
    }
    j->depth--;
    sp_buf_append(j->out, &bracket, 1);
}

void sp_json_obj_open(sp_json *j) { open_container(j, '{'); }
void sp_json_obj_close(sp_json *j) { close_container(j, '}'); }
void sp_json_arr_open(sp_json *j) { open_container(j, '['); }
void sp_json_arr_close(sp_json *j) { close_container(j, ']'); }

/* Length of the well-formed UTF-8 sequence at s (1-4), or 0 when it is ill-formed, with
 * *bad set to the length of its maximal ill-formed prefix (Unicode 3.9, table 3-7),
 * which becomes one U+FFFD. s[0] >= 0x80. */
static size_t utf8_sequence(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */

    if (c >= 0xc2 && c <= 0xdf) {
        need = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    size_t k = 1;
    if (k < n && s[k] >= lo && s[k] <= hi) {
        for (k = 2; k < need && k < n && s[k] >= 0x80 && s[k] <= 0xbf; k++)
            ;
        if (k == need)
            return need;
    }
    *bad = k;
    return 0;
}

static void write_string(sp_buf *out, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0; /* start of the bytes not yet written that need no escaping */
    size_t i = 0;

    sp_buf_append(out, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t bad, len = utf8_sequence(s + i, n - i, &bad);
            if (len != 0) {
                i += len;
                continue;
            }
            sp_buf_append(out, s + run, i - run);
            sp_buf_append(out, "\\ufffd", 6);
            i += bad;
            run = i;
            continue;
        }
        sp_buf_append(out, s + run, i - run);
        char esc[6] = {'\\', 0};
        size_t esc_len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            esc_len = 6;
        }
        sp_buf_append(out, esc, esc_len);
        i++;
        run = i;
    }
    sp_buf_append(out, s + run, n - run);
    sp_buf_append(out, "\"", 1);
}

void sp_json_key(sp_json *j, const char *k)
{
    separate(j);
    write_string(j->out, k, strlen(k));
    sp_buf_append(j->out, ":", 1);
    j->need_comma[j->depth] = false;
}

void sp_json_strn(sp_json *j, const char *s, size_t n)
{
    separate(j);
    write_string(j->out, s, n);
}

void sp_json_str(sp_json *j, const char *s)
{
    if (s == NULL)
        sp_json_null(j);
    else
        sp_json_strn(j, s, strlen(s));
}

void sp_json_int(sp_json *j, long long v)
{
    separate(j);
    sp_buf_appendf(j->out, "%lld", v);
}

void sp_json_uint(sp_json *j, unsigned long long v)
{
    separate(j);
    sp_buf_appendf(j->out, "%llu", v);
}

void sp_json_double(sp_json *j, double v)
{
    if (!isfinite(v)) {
        sp_json_null(j);
        return;
    }
    char text[32];
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, v);
        /* A locale other than "C" may have written a decimal comma; JSON wants a point
         * (and strtod in that locale reads the comma, so the check below still holds). */
        if (strtod(text, NULL) == v)
            break;
    }
    for (char *p = text; *p != '\0'; p++)
        if (*p == ',')
            *p = '.';
    separate(j);
    sp_buf_append(j->out, text, strlen(text));
}

void sp_json_bool(sp_json *j, bool v)
{
    separate(j);
    if (v)
        sp_buf_append(j->out, "true", 4);
    else
        sp_buf_append(j->out, "false", 5);
}

void sp_json_null(sp_json *j)
{
    separate(j);
    sp_buf_append(j->out, "null", 4);
}
