#include "lua/library.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static char library_dir[PATH_MAX];
static uv_once_t resolved = UV_ONCE_INIT;

static bool holds_library(const char *dir)
{
    char init[PATH_MAX + 32];
    snprintf(init, sizeof init, "%s/smartproxy/init.lua", dir);
    return access(init, R_OK) == 0;
}

/* <folder of the executable>/../SP_LUA_LIBRARY_SUBDIR, canonical, or "" */
static void beside_executable(char *out, size_t outlen)
{
    char exe[PATH_MAX], dir[PATH_MAX + 64];
    size_t len = sizeof exe;
    out[0] = '\0';
    if (uv_exepath(exe, &len) != 0)
        return;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return;
    *slash = '\0';
    snprintf(dir, sizeof dir, "%s/../%s", exe, SP_LUA_LIBRARY_SUBDIR);
    char real[PATH_MAX];
    if (realpath(dir, real) && strlen(real) < outlen)
        snprintf(out, outlen, "%s", real);
}

static void resolve(void)
{
    char installed[PATH_MAX];
    beside_executable(installed, sizeof installed);
    const char *candidates[] = {installed, SP_LUA_DIR, SP_LUA_LIBRARY_INSTALL_DIR};
    const char *found = SP_LUA_DIR;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (candidates[i][0] && holds_library(candidates[i])) {
            found = candidates[i];
            break;
        }
    snprintf(library_dir, sizeof library_dir, "%s", found);
}

const char *sp_lua_library_dir(void)
{
    uv_once(&resolved, resolve);
    return library_dir;
}

bool sp_lua_library_module(const char *name)
{
    return strncmp(name, "smartproxy", 10) == 0 && (name[10] == '\0' || name[10] == '.');
}
