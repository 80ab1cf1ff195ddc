/* library: where the `smartproxy` Lua library is, for this binary.
 *
 * `require "smartproxy"` and every `smartproxy.*` module resolve only here, never on
 * package.path, so nothing beside a configuration (a config called smartproxy.lua, a
 * smartproxy/ folder) can stand in for the library. The folder is, first found:
 *   1. <folder of the executable>/../share/lua/5.1  (an installed binary: its own library,
 *      also when the install tree was unpacked somewhere else)
 *   2. the source tree the binary was built from     (a binary run from the build folder)
 *   3. <install prefix>/share/lua/5.1                 (the compiled-in install place)
 * A candidate counts when it holds smartproxy/init.lua. */
#ifndef SP_LUA_LIBRARY_H
#define SP_LUA_LIBRARY_H

#include <stdbool.h>

/* The folder that holds smartproxy/init.lua (no trailing slash); resolved once, safe from
 * any thread. Falls back to the source tree's folder when no candidate has the library
 * (then require reports the module missing). */
const char *sp_lua_library_dir(void);

/* True for a module name the library owns: "smartproxy" and "smartproxy.*". */
bool sp_lua_library_module(const char *name);

#endif
