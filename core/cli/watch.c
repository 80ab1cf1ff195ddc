#include "cli/watch.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define DEBOUNCE_MS 150

static void on_debounced(uv_timer_t *t)
{
    sp_watch *w = t->data;
    w->changed(w->ud);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    sp_watch *w = h->data;
    if (status < 0 || !filename || !w->sources)
        return;
    char dir[1024];
    size_t dl = sizeof dir;
    if (uv_fs_event_getpath(h, dir, &dl) != 0)
        return;
    /* only files the configuration actually loaded count, e.g. not editor swap files */
    for (size_t i = 0; i < w->sources->n; i++) {
        const char *p = w->sources->items[i].path;
        const char *slash = strrchr(p, '/');
        const char *base = slash ? slash + 1 : p;
        size_t plen = slash ? (size_t)(slash - p) : 1;
        const char *pdir = slash ? p : ".";
        if (strcmp(base, filename) == 0 && plen == dl && strncmp(pdir, dir, dl) == 0) {
            uv_timer_start(&w->debounce, on_debounced, DEBOUNCE_MS, 0);
            return;
        }
    }
}

void sp_watch_init(sp_watch *w, uv_loop_t *loop, void (*changed)(void *ud), void *ud)
{
    *w = (sp_watch){.loop = loop, .changed = changed, .ud = ud};
    uv_timer_init(loop, &w->debounce);
    w->debounce.data = w;
}

static void close_dirs(sp_watch *w)
{
    for (int i = 0; i < w->ndirs; i++)
        uv_close((uv_handle_t *)&w->dirs[i], NULL);
    w->ndirs = 0;
}

void sp_watch_sources(sp_watch *w, sp_source_set *sources)
{
    sp_source_set_ref(sources);
    sp_source_set_unref(w->sources);
    w->sources = sources;
    close_dirs(w);
    /* handles are reused only after their close callbacks ran: run them now */
    uv_run(w->loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < sources->n && w->ndirs < SP_WATCH_MAX_DIRS; i++) {
        const char *p = sources->items[i].path;
        const char *slash = strrchr(p, '/');
        char dir[1024];
        if (slash)
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - p), p);
        else
            snprintf(dir, sizeof dir, ".");
        bool seen = false;
        for (int k = 0; k < w->ndirs && !seen; k++) {
            char wd[1024];
            size_t wl = sizeof wd;
            seen = uv_fs_event_getpath(&w->dirs[k], wd, &wl) == 0 && strcmp(wd, dir) == 0;
        }
        if (seen)
            continue;
        uv_fs_event_t *h = &w->dirs[w->ndirs];
        uv_fs_event_init(w->loop, h);
        h->data = w;
        if (uv_fs_event_start(h, on_fs_event, dir, 0) == 0)
            w->ndirs++;
        else
            uv_close((uv_handle_t *)h, NULL);
    }
}

void sp_watch_close(sp_watch *w)
{
    close_dirs(w);
    uv_close((uv_handle_t *)&w->debounce, NULL);
    sp_source_set_unref(w->sources);
    w->sources = NULL;
}
