/*
 * A growable byte buffer for building output (JSON for /stats and logs, response heads).
 *
 * Failure is sticky instead of returned: once an allocation fails, `oom` is set and every
 * later append is a no-op, so a writer can append freely and check once at the end.
 */
#ifndef SP_UTIL_BUF_H
#define SP_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sp_buf {
    char *data;   /* NULL until the first append; then always NUL-terminated at len */
    size_t len, cap;
    bool oom;     /* an append failed; the contents are incomplete */
} sp_buf;

/* A zeroed sp_buf is an initialised empty buffer; sp_buf_init just does that. */
void sp_buf_init(sp_buf *b);

/* Releases the memory and leaves an empty buffer. */
void sp_buf_free(sp_buf *b);

/* Empties the buffer for reuse, keeping its memory, and clears `oom`. */
void sp_buf_reset(sp_buf *b);

void sp_buf_append(sp_buf *b, const void *p, size_t n);
void sp_buf_appendf(sp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s escaped as a Prometheus label value (backslash, double quote, newline). */
void sp_buf_append_label(sp_buf *b, const char *s);

#endif
