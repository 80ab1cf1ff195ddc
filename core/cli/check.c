/* --check: the summary and the warnings; see check.h. */
#include "cli/check.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/describe.h"
#include "config/lint.h"
#include "config/print.h"
#include "tls/context.h"
#include "util/buf.h"
#include "util/json.h"

#define EXPIRY_WARN_DAYS 14

typedef struct warnings {
    sp_lint_warning *items;
    size_t n, cap;
} warnings;

static void add(const sp_lint_warning *w, void *ud)
{
    warnings *ws = ud;
    if (ws->n == ws->cap) {
        size_t cap = ws->cap ? ws->cap * 2 : 8;
        sp_lint_warning *ni = realloc(ws->items, cap * sizeof *ni);
        if (!ni)
            return; /* out of memory: fewer warnings, never a wrong one */
        ws->items = ni;
        ws->cap = cap;
    }
    ws->items[ws->n++] = *w;
}

/* The certificate a terminating route serves from its files, when it expires soon. */
static void check_certificate(const sp_route *r, warnings *ws)
{
    time_t not_after;
    if (!sp_tls_route_cert_expiry(r, &not_after))
        return;
    double left = difftime(not_after, time(NULL));
    if (left >= EXPIRY_WARN_DAYS * 86400.0)
        return;
    int days = (int)(left / 86400);
    sp_lint_warning w = {.route = r};
    if (left <= 0)
        snprintf(w.message, sizeof w.message, "route \"%s\" (#%d): its certificate has expired", r->name, r->index);
    else
        snprintf(w.message, sizeof w.message, "route \"%s\" (#%d): its certificate expires in %d day%s",
                 r->name, r->index, days, days == 1 ? "" : "s");
    add(&w, ws);
}

static void collect(const sp_gen *g, warnings *ws)
{
    sp_config_lint(g, add, ws);
    for (size_t i = 0; i < g->nroutes; i++)
        check_certificate(&g->routes[i], ws);
}

/* Prints {"ok": ok, ...what `rest` writes} and a newline. */
static void print_result(bool ok, void (*rest)(sp_json *j, const void *arg), const void *arg, FILE *out)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_json j;
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_json_key(&j, "ok");
    sp_json_bool(&j, ok);
    rest(&j, arg);
    sp_json_obj_close(&j);
    fprintf(out, "%.*s\n", (int)b.len, b.data);
    sp_buf_free(&b);
}

typedef struct summary {
    const sp_gen *g;
    const warnings *ws;
} summary;

static void summary_json(sp_json *j, const void *arg)
{
    const summary *s = arg;
    const sp_gen *g = s->g;
    const warnings *ws = s->ws;
    sp_json_key(j, "file");
    sp_json_str(j, g->file);
    sp_json_key(j, "ports");
    sp_json_arr_open(j);
    for (size_t i = 0; i < g->nports; i++)
        sp_json_uint(j, g->ports[i].port);
    sp_json_arr_close(j);
    sp_json_key(j, "listen_addresses");
    sp_json_arr_open(j);
    for (size_t i = 0; i < g->settings.nlisten_addresses; i++)
        sp_json_str(j, g->settings.listen_addresses[i]);
    sp_json_arr_close(j);
    sp_json_key(j, "routes");
    sp_json_arr_open(j);
    for (size_t i = 0; i < g->nroutes; i++)
        sp_route_json(&g->routes[i], j);
    sp_json_arr_close(j);
    sp_json_key(j, "warnings");
    sp_json_arr_open(j);
    for (size_t i = 0; i < ws->n; i++) {
        sp_json_obj_open(j);
        sp_json_key(j, "route");
        sp_json_str(j, ws->items[i].route->name);
        sp_json_key(j, "message");
        sp_json_str(j, ws->items[i].message);
        sp_json_obj_close(j);
    }
    sp_json_arr_close(j);
}

size_t sp_check_print(const sp_gen *g, const sp_nft_ruleset *kernel, bool json, FILE *out)
{
    warnings ws = {0};
    collect(g, &ws);
    if (json) {
        summary s = {g, &ws};
        print_result(true, summary_json, &s, out);
    } else {
        sp_gen_print_summary(g, out);
        sp_nft_print(kernel, out);
        if (ws.n)
            fputs("warnings:\n", out);
        for (size_t i = 0; i < ws.n; i++)
            fprintf(out, "  %s\n", ws.items[i].message);
    }
    size_t n = ws.n;
    free(ws.items);
    return n;
}

static void error_json(sp_json *j, const void *err)
{
    sp_json_key(j, "error");
    sp_json_str(j, err);
}

void sp_check_print_error(const char *err, bool json, FILE *out)
{
    if (!json) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    print_result(false, error_json, err, out);
}
