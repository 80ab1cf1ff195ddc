/* jsonr: a small JSON reader for ACME responses (directory, orders, authorizations,
 * problem documents). Pure; builds a tree; depth limited to 32; strings are decoded
 * (\uXXXX to UTF-8, surrogate pairs joined). NULL on any syntax error. */
#ifndef SP_CERT_JSONR_H
#define SP_CERT_JSONR_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { SP_JV_NULL, SP_JV_BOOL, SP_JV_NUM, SP_JV_STR, SP_JV_ARR, SP_JV_OBJ } sp_jv_type;

typedef struct sp_jv {
    sp_jv_type type;
    char *key;                 /* member name inside an object, else NULL */
    char *str;                 /* SP_JV_STR */
    double num;
    bool b;
    struct sp_jv *child;       /* first element / member */
    struct sp_jv *next;        /* next sibling */
} sp_jv;

sp_jv *sp_jv_parse(const char *text, size_t len);
void sp_jv_free(sp_jv *v);
/* The member `key` of an object, or NULL. */
const sp_jv *sp_jv_get(const sp_jv *obj, const char *key);
/* The string member `key`, or NULL when absent or not a string. */
const char *sp_jv_str(const sp_jv *obj, const char *key);

#endif
