/*
 * libFuzzer target for core/cert/jsonr.h, the reader of what an ACME server answers
 * (directory, orders, authorizations, problem documents): whatever the bytes, it returns
 * NULL or a tree, never reads outside the input, and every string in the tree is
 * NUL-terminated within its allocation. The tree is walked the way acme.c walks it.
 */
#include "cert/jsonr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t walk(const sp_jv *v, int depth)
{
    size_t n = 0;
    for (; v; v = v->next) {
        if (depth > 40)
            abort(); /* the reader limits nesting to 32 */
        n++;
        if (v->key)
            n += strlen(v->key);
        if (v->type == SP_JV_STR)
            n += strlen(v->str);
        n += walk(v->child, depth + 1);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the input is not NUL-terminated: copy it so that a read past the end is caught */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    sp_jv *v = sp_jv_parse(text, size);
    if (v) {
        walk(v, 0);
        (void)sp_jv_str(v, "status");
        const sp_jv *c = sp_jv_get(v, "challenges");
        for (const sp_jv *x = c ? c->child : NULL; x; x = x->next)
            (void)sp_jv_str(x, "token");
    }
    sp_jv_free(v);
    free(text);
    return 0;
}
