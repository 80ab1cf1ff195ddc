/* bufpool: a per-worker free list of fixed-size read buffers, so reading a socket does
 * not hit malloc per read. One thread only (the worker's). */
#ifndef SP_NET_BUFPOOL_H
#define SP_NET_BUFPOOL_H

#include <stddef.h>

typedef struct sp_bufpool {
    void **free;
    size_t n, cap;
} sp_bufpool;

#define SP_READ_BUF_SIZE (64 * 1024)

/* A buffer of SP_READ_BUF_SIZE bytes, or NULL when memory is short. */
void *sp_bufpool_get(sp_bufpool *p);
/* Gives buf back (NULL is ignored); past the pool's size it is freed. */
void sp_bufpool_put(sp_bufpool *p, void *buf);
/* Frees every kept buffer; the pool stays usable. */
void sp_bufpool_clear(sp_bufpool *p);

#endif
