#include "util/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sp_buf_init(sp_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void sp_buf_free(sp_buf *b)
{
    free(b->data);
    sp_buf_init(b);
}

void sp_buf_reset(sp_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->data != NULL)
        b->data[0] = '\0';
}

/* Makes room for n more bytes plus the NUL; false (and oom) when that fails. */
static bool reserve(sp_buf *b, size_t n)
{
    if (b->oom)
        return false;
    if (n < b->cap - b->len) /* cap - len is never 0 once data exists: the NUL's byte */
        return true;
    if (n > SIZE_MAX / 2 - b->len - 1) {
        b->oom = true;
        return false;
    }
    size_t need = b->len + n + 1;
    size_t cap = b->cap != 0 ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        b->oom = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

void sp_buf_append(sp_buf *b, const void *p, size_t n)
{
    if (!reserve(b, n))
        return;
    if (n != 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sp_buf_appendf(sp_buf *b, const char *fmt, ...)
{
    if (!reserve(b, 0))
        return;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    if (n >= 0 && (size_t)n >= room && reserve(b, (size_t)n))
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
    va_end(again);
    va_end(ap);
    if (n < 0) {
        b->oom = true; /* an encoding error; rare, but the contents are incomplete */
        b->data[b->len] = '\0';
        return;
    }
    if (!b->oom)
        b->len += (size_t)n;
    else
        b->data[b->len] = '\0'; /* undo the truncated first attempt */
}

void sp_buf_append_label(sp_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            sp_buf_appendf(b, "\\%c", *s);
        else if (*s == '\n')
            sp_buf_append(b, "\\n", 2);
        else
            sp_buf_append(b, s, 1);
    }
}
