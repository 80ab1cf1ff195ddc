#include "net/bufpool.h"

#include <stdlib.h>

#define POOL_MAX_FREE 64   /* read buffers kept for reuse per worker (4 MiB) */

void *sp_bufpool_get(sp_bufpool *p)
{
    if (p->n)
        return p->free[--p->n];
    return malloc(SP_READ_BUF_SIZE);
}

void sp_bufpool_put(sp_bufpool *p, void *buf)
{
    if (!buf)
        return;
    if (p->n == p->cap && p->cap < POOL_MAX_FREE) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        void **nf = realloc(p->free, cap * sizeof *nf);
        if (nf) {
            p->free = nf;
            p->cap = cap;
        }
    }
    if (p->n < p->cap)
        p->free[p->n++] = buf;
    else
        free(buf);
}

void sp_bufpool_clear(sp_bufpool *p)
{
    while (p->n)
        free(p->free[--p->n]);
    free(p->free);
    p->free = NULL;
    p->cap = 0;
}
