#include "lua/config_load.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luajit.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/budget.h"
#include "lua/memory.h"
#include "lua/task.h"
#include "tls/context.h"

#define USER_CHUNKS_KEY "smartproxy.user_chunks" /* functions loaded with the JIT off */

static _Atomic uint64_t load_time_ms = 10000, load_memory = 1024ull << 20;

void sp_config_load_bounds(uint64_t time_ms, uint64_t memory)
{
    atomic_store(&load_time_ms, time_ms);
    atomic_store(&load_memory, memory);
}

typedef struct recorder {
    sp_source *items;
    size_t n, cap;
    bool oom;
} recorder;

static void record(recorder *r, const char *module, const char *path, char *text, size_t len)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        sp_source *items = realloc(r->items, cap * sizeof *items);
        if (!items) {
            r->oom = true;
            free(text);
            return;
        }
        r->items = items;
        r->cap = cap;
    }
    r->items[r->n++] = (sp_source){
        .module = module ? strdup(module) : NULL, .path = strdup(path), .text = text, .len = len};
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static bool is_library_path(const char *path)
{
    static const char *const dirs[] = {SP_LUA_DIR "/", SP_LUA_INSTALL_DIR "/"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        if (strncmp(path, dirs[i], strlen(dirs[i])) == 0)
            return true;
    return false;
}

/* Loads a chunk of the config or of a module it requires. The user's own code runs with
 * the JIT off, so that timeouts.lua_budget can stop any loop in it (lua/budget.h); the
 * chunks are remembered in case limits.lua_jit turns it back on. */
static int load_chunk(lua_State *L, const char *text, size_t len, const char *path)
{
    char name[1024];
    snprintf(name, sizeof name, "@%s", path);
    int rc = luaL_loadbuffer(L, text, len, name);
    if (rc == 0 && !is_library_path(path)) {
        sp_lua_budget_mark_user_code(L);
        lua_getfield(L, LUA_REGISTRYINDEX, USER_CHUNKS_KEY);
        if (lua_istable(L, -1)) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
        }
        lua_pop(L, 1);
    }
    return rc;
}

/* limits.lua_jit: the user's functions may be compiled after all. */
static void release_user_chunks(lua_State *L, bool jit)
{
    lua_getfield(L, LUA_REGISTRYINDEX, USER_CHUNKS_KEY);
    int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    for (int i = 1; jit && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        luaJIT_setmode(L, -1, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_ON);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, USER_CHUNKS_KEY);
}

/* package.loaders entry while recording: finds the module on package.path like the
 * standard Lua loader, and keeps its source. */
static int recording_loader(lua_State *L)
{
    recorder *r = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, name);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 1; /* the "no file ..." message, as the standard loader reports */
    const char *path = lua_tostring(L, -2);
    size_t len;
    char *text = read_file(path, &len);
    if (!text)
        return luaL_error(L, "cannot read module '%s' from %s", name, path);
    if (load_chunk(L, text, len, path) != 0) {
        free(text);
        return lua_error(L);
    }
    record(r, name, path, text, len);
    return 1;
}

/* package.loaders entry in workers: serves modules from the recorded sources. */
static int replay_loader(lua_State *L)
{
    const sp_source_set *set = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1);
    for (size_t i = 0; i < set->n; i++) {
        const sp_source *s = &set->items[i];
        if (s->module && strcmp(s->module, name) == 0) {
            if (load_chunk(L, s->text, s->len, s->path) != 0)
                return lua_error(L);
            return 1;
        }
    }
    lua_pushfstring(L, "\n\tno recorded source for '%s'", name);
    return 1;
}

/* Prepends the smartproxy library folders and the config file's own folder. */
static void set_package_path(lua_State *L, const char *file)
{
    char dir[1024];
    const char *slash = strrchr(file, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - file), file);
    else
        snprintf(dir, sizeof dir, ".");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;" SP_LUA_DIR "/?.lua;" SP_LUA_DIR "/?/init.lua;"
                       SP_LUA_INSTALL_DIR "/?.lua;" SP_LUA_INSTALL_DIR "/?/init.lua;%s",
                    dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

static void install_loader(lua_State *L, lua_CFunction fn, void *up)
{
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "insert");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaders");
    lua_remove(L, -2);
    lua_pushinteger(L, 2);
    lua_pushlightuserdata(L, up);
    lua_pushcclosure(L, fn, 1);
    lua_call(L, 3, 0);
    lua_pop(L, 1);
}

static void free_items(sp_source *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].module);
        free(items[i].path);
        free(items[i].text);
    }
    free(items);
}

/* Replaces the `routes` of the config table on top of L with what `text` returns. */
static int apply_routes_override(lua_State *L, const char *text, char *err, size_t errlen)
{
    if (!lua_istable(L, -1))
        return 0; /* the compiler reports that the file did not return a table */
    if (luaL_loadbuffer(L, text, strlen(text), "=sp.update_routes") != 0 || lua_pcall(L, 0, 1, 0) != 0) {
        snprintf(err, errlen, "sp.update_routes: %s", lua_tostring(L, -1));
        return -1;
    }
    lua_setfield(L, -2, "routes");
    return 0;
}

sp_gen *sp_config_load(const char *file, sp_source_set *replay, sp_source_set **recorded,
                       char *err, size_t errlen)
{
    lua_State *L = sp_lua_state_new(atomic_load(&load_memory));
    if (!L) {
        snprintf(err, errlen, "%s: cannot create a Lua state (out of memory)", file);
        return NULL;
    }
    luaL_openlibs(L);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, USER_CHUNKS_KEY);
    sp_lua_open_core(L);
    set_package_path(L, file);

    recorder rec = {0};
    const char *text = NULL;
    size_t len = 0;
    if (replay) {
        install_loader(L, replay_loader, replay);
        for (size_t i = 0; i < replay->n; i++)
            if (!replay->items[i].module) {
                text = replay->items[i].text;
                len = replay->items[i].len;
            }
    } else {
        install_loader(L, recording_loader, &rec);
        char *t = read_file(file, &len);
        if (!t) {
            snprintf(err, errlen, "%s: cannot read the configuration file", file);
            goto fail;
        }
        record(&rec, NULL, file, t, len);
        text = t;
    }
    if (!text) {
        snprintf(err, errlen, "%s: no configuration source", file);
        goto fail;
    }

    if (load_chunk(L, text, len, file) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1)); /* "file:line: message" */
        goto fail;
    }
    sp_lua_budget_enter(L, atomic_load(&load_time_ms));
    int rc = lua_pcall(L, 0, 1, 0);
    bool too_long;
    sp_lua_budget_leave(&too_long);
    if (rc != 0) {
        if (too_long)
            snprintf(err, errlen, "%s (timeouts.config_load: a configuration must finish loading)",
                     lua_tostring(L, -1));
        else if (rc == LUA_ERRMEM)
            snprintf(err, errlen, "%s: loading needed more than %llu bytes of Lua memory (limits.lua_memory)",
                     file, (unsigned long long)atomic_load(&load_memory));
        else
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto fail;
    }
    if (replay && replay->routes_override && apply_routes_override(L, replay->routes_override, err, errlen) != 0)
        goto fail;
    if (rec.oom) {
        snprintf(err, errlen, "%s: out of memory while recording sources", file);
        goto fail;
    }
    sp_gen *g = sp_gen_compile(L, sp_lua_state_close, file, err, errlen);
    if (!g)
        goto fail;
    lua_settop(L, 0);
    release_user_chunks(L, g->settings.lua_jit);
    sp_lua_state_set_limit(L, g->settings.lua_memory);
    if (replay) {
        if (replay->tls && sp_tls_set_attach(replay->tls, g, err, errlen) != 0) {
            sp_gen_unref(g);
            return NULL;
        }
        return g;
    }
    sp_tls_set *tls = sp_tls_set_build(g, err, errlen);
    sp_source_set *set = tls ? calloc(1, sizeof *set) : NULL;
    if (!set) {
        if (tls) {
            sp_tls_set_unref(tls);
            snprintf(err, errlen, "%s: out of memory", file);
        }
        sp_gen_unref(g);
        free_items(rec.items, rec.n);
        return NULL;
    }
    atomic_init(&set->refs, 1);
    set->items = rec.items;
    set->n = rec.n;
    set->tls = tls;
    if (recorded)
        *recorded = set;
    else
        sp_source_set_unref(set);
    return g;

fail:
    sp_lua_state_close(L);
    free_items(rec.items, rec.n);
    return NULL;
}

void sp_source_set_ref(sp_source_set *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void sp_source_set_unref(sp_source_set *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        free_items(s->items, s->n);
        sp_tls_set_unref(s->tls);
        free(s->routes_override);
        free(s);
    }
}

sp_gen *sp_config_load_routes(const char *file, const sp_source_set *base, const char *routes_text,
                              sp_source_set **out, char *err, size_t errlen)
{
    sp_source_set *set = calloc(1, sizeof *set);
    if (!set || !(set->items = calloc(base->n + 1, sizeof *set->items)) ||
        !(set->routes_override = strdup(routes_text))) {
        snprintf(err, errlen, "%s: out of memory", file);
        goto fail;
    }
    atomic_init(&set->refs, 1);
    for (size_t i = 0; i < base->n; i++, set->n++) {
        const sp_source *b = &base->items[i];
        sp_source *d = &set->items[i];
        d->module = b->module ? strdup(b->module) : NULL;
        d->path = strdup(b->path);
        d->text = malloc(b->len ? b->len : 1);
        d->len = b->len;
        if ((b->module && !d->module) || !d->path || !d->text) {
            set->n++;
            snprintf(err, errlen, "%s: out of memory", file);
            goto fail;
        }
        memcpy(d->text, b->text, b->len);
    }
    sp_gen *g = sp_config_load(file, set, NULL, err, errlen);
    if (!g)
        goto fail;
    /* the contexts were attached from nothing: build this set's own */
    if (!(set->tls = sp_tls_set_build(g, err, errlen))) {
        sp_gen_unref(g);
        goto fail;
    }
    *out = set;
    return g;
fail:
    sp_source_set_unref(set);
    return NULL;
}
