/* jsonr: recursive-descent JSON reader (see jsonr.h). */
#include "cert/jsonr.h"

#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const char *p, *end;
    int depth;
} rd;

static void ws(rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8(unsigned cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static char *string(rd *r)
{
    if (r->p >= r->end || *r->p != '"')
        return NULL;
    r->p++;
    const char *q = r->p;
    while (q < r->end && *q != '"')
        q += *q == '\\' ? 2 : 1;
    if (q >= r->end)
        return NULL;
    char *out = malloc((size_t)(q - r->p) + 1), *o = out;
    if (!out)
        return NULL;
    while (r->p < q) {
        unsigned char c = (unsigned char)*r->p++;
        if (c < 0x20)
            goto bad;
        if (c != '\\') {
            *o++ = (char)c;
            continue;
        }
        char e = *r->p++;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (q - r->p < 4 || hex4(r->p, &cp) != 0)
                goto bad;
            r->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && q - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u' &&
                hex4(r->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r->p += 6;
            } else if (cp >= 0xd800 && cp < 0xe000) {
                cp = 0xfffd;
            }
            o += utf8(cp, o); /* never longer than the 6 escape characters it replaces */
            break;
        }
        default: goto bad;
        }
    }
    *o = 0;
    r->p = q + 1;
    return out;
bad:
    free(out);
    return NULL;
}

static sp_jv *value(rd *r);

static sp_jv *container(rd *r, sp_jv *v, char close)
{
    sp_jv **tail = &v->child;
    ws(r);
    if (r->p < r->end && *r->p == close) {
        r->p++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        ws(r);
        if (close == '}') {
            if (!(key = string(r)))
                goto bad;
            ws(r);
            if (r->p >= r->end || *r->p != ':') {
                free(key);
                goto bad;
            }
            r->p++;
        }
        sp_jv *c = value(r);
        if (!c) {
            free(key);
            goto bad;
        }
        c->key = key;
        *tail = c;
        tail = &c->next;
        ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == close) {
            r->p++;
            return v;
        }
        goto bad;
    }
bad:
    sp_jv_free(v);
    return NULL;
}

static sp_jv *value(rd *r)
{
    ws(r);
    if (r->p >= r->end || ++r->depth > 32)
        return NULL;
    sp_jv *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    char c = *r->p;
    sp_jv *out = v;
    if (c == '{' || c == '[') {
        r->p++;
        v->type = c == '{' ? SP_JV_OBJ : SP_JV_ARR;
        out = container(r, v, c == '{' ? '}' : ']');
    } else if (c == '"') {
        v->type = SP_JV_STR;
        if (!(v->str = string(r))) {
            free(v);
            out = NULL;
        }
    } else if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
        v->type = SP_JV_BOOL, v->b = true, r->p += 4;
    } else if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
        v->type = SP_JV_BOOL, r->p += 5;
    } else if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
        v->type = SP_JV_NULL, r->p += 4;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t n = 0;
        while (r->p + n < r->end && n < sizeof buf - 1 && strchr("+-0123456789.eE", r->p[n]))
            n++;
        memcpy(buf, r->p, n);
        buf[n] = 0;
        char *e;
        v->type = SP_JV_NUM;
        v->num = strtod(buf, &e);
        if (e != buf + n) {
            free(v);
            out = NULL;
        }
        r->p += n;
    } else {
        free(v);
        out = NULL;
    }
    r->depth--;
    return out;
}

sp_jv *sp_jv_parse(const char *text, size_t len)
{
    rd r = {text, text + len, 0};
    sp_jv *v = value(&r);
    ws(&r);
    if (v && r.p != r.end) {
        sp_jv_free(v);
        return NULL;
    }
    return v;
}

void sp_jv_free(sp_jv *v)
{
    while (v) {
        sp_jv *n = v->next;
        sp_jv_free(v->child);
        free(v->key);
        free(v->str);
        free(v);
        v = n;
    }
}

const sp_jv *sp_jv_get(const sp_jv *obj, const char *key)
{
    if (!obj || obj->type != SP_JV_OBJ)
        return NULL;
    for (const sp_jv *c = obj->child; c; c = c->next)
        if (strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

const char *sp_jv_str(const sp_jv *obj, const char *key)
{
    const sp_jv *v = sp_jv_get(obj, key);
    return v && v->type == SP_JV_STR ? v->str : NULL;
}
