/*
 * libFuzzer target for core/pattern/template.h.
 *
 * The input (up to its first NUL) is compiled as a template. A refused one must say why
 * and leave the template zeroed; an accepted one is expanded with fixed values, and with
 * none, and compared with a plain reading of the text: "{name}" replaced by its value,
 * everything else as written (so a template without '{' expands to itself). The `uses`
 * bits are those of the names in the text.
 */
#include "pattern/template.h"

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

static const char *const VALUES[SP_TV_COUNT] = {
    "192.0.2.1", "40000", "example.com", "example.com:8443", "8443", "/p/q", "a=1",
    "/p/q?a=1", "https", "route-1", "42",
};

/* The plain reading: text with each "{name}" replaced; vals NULL gives "". */
static void reference(const char *text, const sp_template_values *vals, sp_buf *out,
                      unsigned *uses)
{
    *uses = 0;
    for (const char *s = text; *s != '\0';) {
        if (*s != '{') {
            sp_buf_append(out, s, 1);
            s++;
            continue;
        }
        const char *close = strchr(s, '}');
        ENSURE(close != NULL);
        int v = sp_template_var_lookup(s + 1, (size_t)(close - s - 1));
        ENSURE(v >= 0);
        ENSURE(strlen(sp_template_var_name((sp_template_var)v)) == (size_t)(close - s - 1));
        *uses |= 1u << v;
        if (vals != NULL && vals->v[v] != NULL)
            sp_buf_append(out, vals->v[v], vals->len[v]);
        s = close + 1;
    }
}

static void check_expansion(const sp_template *t, const char *text,
                            const sp_template_values *vals)
{
    sp_buf got, want;
    sp_buf_init(&got);
    sp_buf_init(&want);
    sp_template_expand(t, vals, &got);
    unsigned uses;
    reference(text, vals, &want, &uses);
    ENSURE(!got.oom && !want.oom);
    ENSURE(got.data != NULL);
    ENSURE(got.len == want.len && (got.len == 0 || memcmp(got.data, want.data, got.len) == 0));
    ENSURE(uses == t->uses);
    if (strchr(text, '{') == NULL)
        ENSURE(got.len == strlen(text) && memcmp(got.data, text, got.len) == 0);
    sp_buf_free(&got);
    sp_buf_free(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    ENSURE(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    sp_template t;
    char err[256];
    if (sp_template_compile(text, &t, err, sizeof err) != 0) {
        ENSURE(err[0] != '\0');
        ENSURE(t.text == NULL && t.parts == NULL && t.nparts == 0 && t.uses == 0);
        ENSURE(strchr(text, '{') != NULL || strchr(text, '}') != NULL);
        free(text);
        return 0;
    }
    ENSURE(t.text != NULL && strcmp(t.text, text) == 0);
    ENSURE(t.uses < (1u << SP_TV_COUNT));
    ENSURE(t.nparts <= strlen(text));

    sp_template_values vals;
    for (int i = 0; i < SP_TV_COUNT; i++) {
        vals.v[i] = VALUES[i];
        vals.len[i] = strlen(VALUES[i]);
    }
    check_expansion(&t, text, &vals);
    check_expansion(&t, text, NULL);
    /* Values taken from the input itself, of every length. */
    for (int i = 0; i < SP_TV_COUNT; i++) {
        vals.v[i] = text;
        vals.len[i] = strlen(text) * (size_t)i / SP_TV_COUNT;
    }
    check_expansion(&t, text, &vals);

    sp_template_free(&t);
    ENSURE(t.text == NULL && t.parts == NULL);
    free(text);
    return 0;
}
