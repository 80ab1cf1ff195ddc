/* config_load: runs the configuration file in a fresh Lua state and compiles a generation.
 *
 * The main thread loads from disk and records the source of the config file and of
 * every Lua module it requires (a "source set"). Workers then load the same bytes from
 * that record: no worker touches the disk, every worker runs identical code even if a
 * file changes mid-reload, and --watch knows exactly which files to watch. */
#ifndef SP_LUA_CONFIG_LOAD_H
#define SP_LUA_CONFIG_LOAD_H

#include <stdatomic.h>
#include <stddef.h>

#include "config/config.h"

typedef struct sp_source {
    char *module;      /* module name, or NULL for the config chunk itself */
    char *path;
    char *text;
    size_t len;
} sp_source;

struct sp_tls_set;

/* What the main thread recorded and prepared for one load: the Lua sources and the TLS
 * contexts of the routes. Immutable once built; shared by threads under an atomic
 * reference count. */
typedef struct sp_source_set {
    _Atomic int refs;
    sp_source *items;
    size_t n;
    struct sp_tls_set *tls;
    char *routes_override;  /* "return {...}" from sp.update_routes: replaces `routes`, or NULL */
} sp_source_set;

/* Loads `file`. With `replay` NULL, reads from disk, builds the TLS contexts and, on
 * success, returns the recorded set in *recorded (refs = 1). With `replay`, runs those
 * sources and attaches those contexts. Returns NULL and a SPEC 10 message in err on any
 * failure (syntax, runtime, validation, certificates). */
sp_gen *sp_config_load(const char *file, sp_source_set *replay, sp_source_set **recorded,
                       char *err, size_t errlen);

/* Loads the configuration recorded in `base` with its routes replaced by the table that
 * the Lua source routes_text returns (sp.update_routes). On success *out is a new set
 * (base's sources, the override, freshly built TLS contexts). */
sp_gen *sp_config_load_routes(const char *file, const sp_source_set *base, const char *routes_text,
                              sp_source_set **out, char *err, size_t errlen);

/* Bounds for every later load, in any thread: how long the config's Lua may run
 * (timeouts.config_load) and the memory cap of the state it runs in (limits.lua_memory).
 * The main thread sets them from the generation that serves; 10 s and 1 GiB before. */
void sp_config_load_bounds(uint64_t time_ms, uint64_t memory);

void sp_source_set_ref(sp_source_set *s);
void sp_source_set_unref(sp_source_set *s);

#endif
