#include "lua/shared.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STRIPES 16
#define BUCKETS 1024
#define SHARED_KEY "smartproxy.shared"
#define MAX_KEY 256

typedef enum { V_STRING, V_NUMBER, V_BOOLEAN } vtype;

typedef struct item {
    struct item *next;
    uint64_t expires_ms;          /* 0: never */
    vtype type;
    double number;
    size_t klen, vlen;
    char bytes[];                 /* key, then string value */
} item;

typedef struct stripe {
    pthread_mutex_t lock;
    item *buckets[BUCKETS];
    size_t count;
} stripe;

struct sp_shared {
    size_t capacity_per_stripe;
    stripe stripes[STRIPES];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t hash(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)k[i]) * 16777619u;
    return h;
}

sp_shared *sp_shared_new(size_t capacity)
{
    sp_shared *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->capacity_per_stripe = capacity / STRIPES + 1;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&d->stripes[i].lock, NULL);
    return d;
}

void sp_shared_free(sp_shared *d)
{
    if (!d)
        return;
    for (int i = 0; i < STRIPES; i++) {
        for (int b = 0; b < BUCKETS; b++)
            for (item *it = d->stripes[i].buckets[b], *next; it; it = next) {
                next = it->next;
                free(it);
            }
        pthread_mutex_destroy(&d->stripes[i].lock);
    }
    free(d);
}

static bool expired(const item *it, uint64_t now) { return it->expires_ms && it->expires_ms <= now; }

/* Finds key in its stripe (locked by the caller), dropping it if expired. */
static item **find(stripe *s, uint32_t h, const char *k, size_t n, uint64_t now)
{
    item **pp = &s->buckets[(h / STRIPES) % BUCKETS];
    while (*pp) {
        item *it = *pp;
        if (it->klen == n && memcmp(it->bytes, k, n) == 0) {
            if (!expired(it, now))
                return pp;
            *pp = it->next;
            free(it);
            s->count--;
            return pp;
        }
        pp = &it->next;
    }
    return pp;
}

/* Drops every expired entry of a full stripe; true if that made room. */
static bool evict_expired(sp_shared *d, stripe *s, uint64_t now)
{
    for (int b = 0; b < BUCKETS; b++)
        for (item **pp = &s->buckets[b]; *pp;) {
            if (expired(*pp, now)) {
                item *it = *pp;
                *pp = it->next;
                free(it);
                s->count--;
            } else {
                pp = &(*pp)->next;
            }
        }
    return s->count < d->capacity_per_stripe;
}

/* ---- Lua ---- */

static sp_shared *dict(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, SHARED_KEY);
    sp_shared *d = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!d)
        luaL_error(L, "sp.shared: only inside a worker");
    return d;
}

static const char *key_arg(lua_State *L, size_t *n)
{
    const char *k = luaL_checklstring(L, 2, n);
    if (*n == 0 || *n > MAX_KEY)
        luaL_argerror(L, 2, "expected a key of 1 to 256 bytes");
    return k;
}

static uint64_t ttl_arg(lua_State *L, int idx, uint64_t now)
{
    lua_Number ttl = luaL_optnumber(L, idx, 0);
    if (ttl < 0)
        luaL_argerror(L, idx, "expected a TTL in seconds >= 0 (0: no expiry)");
    return ttl > 0 ? now + (uint64_t)(ttl * 1000) : 0;
}

static void push_item(lua_State *L, const item *it)
{
    switch (it->type) {
    case V_STRING: lua_pushlstring(L, it->bytes + it->klen, it->vlen); break;
    case V_NUMBER: lua_pushnumber(L, it->number); break;
    case V_BOOLEAN: lua_pushboolean(L, it->number != 0); break;
    }
}

/* shared:get(key) -> value | nil */
static int shared_get(lua_State *L)
{
    sp_shared *d = dict(L);
    size_t n;
    const char *k = key_arg(L, &n);
    uint32_t h = hash(k, n);
    stripe *s = &d->stripes[h % STRIPES];
    pthread_mutex_lock(&s->lock);
    item **pp = find(s, h, k, n, now_ms());
    if (*pp)
        push_item(L, *pp);
    else
        lua_pushnil(L);
    pthread_mutex_unlock(&s->lock);
    return 1;
}

/* shared:set(key, value, ttl_seconds) -> true | nil, err; a nil value deletes. */
static int shared_set(lua_State *L)
{
    sp_shared *d = dict(L);
    size_t n, vlen = 0;
    const char *k = key_arg(L, &n);
    int t = lua_type(L, 3);
    const char *v = NULL;
    if (t == LUA_TSTRING)
        v = lua_tolstring(L, 3, &vlen);
    else if (t != LUA_TNUMBER && t != LUA_TBOOLEAN && t != LUA_TNIL)
        return luaL_argerror(L, 3, "expected a string, number, boolean or nil");
    uint64_t now = now_ms(), expires = ttl_arg(L, 4, now);
    item *fresh = NULL;
    if (t != LUA_TNIL) {
        fresh = malloc(sizeof *fresh + n + vlen);
        if (!fresh)
            return luaL_error(L, "out of memory");
        fresh->expires_ms = expires;
        fresh->klen = n;
        fresh->vlen = vlen;
        memcpy(fresh->bytes, k, n);
        if (v)
            memcpy(fresh->bytes + n, v, vlen);
        fresh->type = t == LUA_TSTRING ? V_STRING : t == LUA_TNUMBER ? V_NUMBER : V_BOOLEAN;
        fresh->number = t == LUA_TNUMBER ? lua_tonumber(L, 3) : t == LUA_TBOOLEAN ? lua_toboolean(L, 3) : 0;
    }
    uint32_t h = hash(k, n);
    stripe *s = &d->stripes[h % STRIPES];
    pthread_mutex_lock(&s->lock);
    item **pp = find(s, h, k, n, now);
    if (*pp) { /* replace */
        item *old = *pp;
        *pp = old->next;
        free(old);
        s->count--;
    } else if (fresh && s->count >= d->capacity_per_stripe && !evict_expired(d, s, now)) {
        pthread_mutex_unlock(&s->lock);
        free(fresh);
        lua_pushnil(L);
        lua_pushliteral(L, "no memory");
        return 2;
    }
    if (fresh) {
        pp = &s->buckets[(h / STRIPES) % BUCKETS];
        fresh->next = *pp;
        *pp = fresh;
        s->count++;
    }
    pthread_mutex_unlock(&s->lock);
    lua_pushboolean(L, 1);
    return 1;
}

/* shared:incr(key, by, init, ttl_seconds) -> new value | nil, err. Without init, a
 * missing key is an error ("not found"), as in OpenResty. */
static int shared_incr(lua_State *L)
{
    sp_shared *d = dict(L);
    size_t n;
    const char *k = key_arg(L, &n);
    lua_Number by = luaL_optnumber(L, 3, 1);
    bool has_init = !lua_isnoneornil(L, 4);
    lua_Number init = has_init ? luaL_checknumber(L, 4) : 0;
    uint64_t now = now_ms(), expires = ttl_arg(L, 5, now);
    uint32_t h = hash(k, n);
    stripe *s = &d->stripes[h % STRIPES];
    pthread_mutex_lock(&s->lock);
    item **pp = find(s, h, k, n, now);
    item *it = *pp;
    if (!it) {
        if (!has_init || (s->count >= d->capacity_per_stripe && !evict_expired(d, s, now)) ||
            !(it = malloc(sizeof *it + n))) {
            pthread_mutex_unlock(&s->lock);
            lua_pushnil(L);
            lua_pushstring(L, has_init ? "no memory" : "not found");
            return 2;
        }
        it->klen = n;
        it->vlen = 0;
        it->type = V_NUMBER;
        it->number = init;
        it->expires_ms = expires;
        memcpy(it->bytes, k, n);
        pp = &s->buckets[(h / STRIPES) % BUCKETS];
        it->next = *pp;
        *pp = it;
        s->count++;
    } else if (it->type != V_NUMBER) {
        pthread_mutex_unlock(&s->lock);
        lua_pushnil(L);
        lua_pushliteral(L, "not a number");
        return 2;
    }
    it->number += by;
    lua_Number result = it->number;
    pthread_mutex_unlock(&s->lock);
    lua_pushnumber(L, result);
    return 1;
}

static int shared_delete(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushnil(L);
    return shared_set(L);
}

void sp_lua_set_shared(lua_State *L, sp_shared *d)
{
    lua_pushlightuserdata(L, d);
    lua_setfield(L, LUA_REGISTRYINDEX, SHARED_KEY);
}

void sp_lua_push_shared(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"get", shared_get}, {"set", shared_set}, {"incr", shared_incr}, {"delete", shared_delete},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 4);
    luaL_register(L, NULL, methods);
}
