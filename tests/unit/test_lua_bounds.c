/* The bounds on Lua code (core/lua/budget.h, core/lua/memory.h), on real LuaJIT states:
 * a run that does not yield is stopped at its budget, a pcall cannot keep it going,
 * compiled code of the user is prevented, and a state's memory is capped. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <string.h>

#include "lua/budget.h"
#include "lua/memory.h"
#include "unit.h"

static sp_lua_budget budget;

/* Runs `code` as user code in a fresh state, bounded by limit_ms; returns the pcall's
 * result and copies its error message. */
static int run(const char *code, uint64_t limit_ms, bool *cut, uint64_t *took, char *msg, size_t msglen)
{
    lua_State *L = sp_lua_state_new(0);
    luaL_openlibs(L);
    if (luaL_loadstring(L, code) != 0)
        return -1;
    sp_lua_budget_mark_user_code(L);
    sp_lua_budget_enter(L, limit_ms);
    int rc = lua_pcall(L, 0, 0, 0);
    *took = sp_lua_budget_leave(cut);
    snprintf(msg, msglen, "%s", rc ? lua_tostring(L, -1) : "");
    sp_lua_state_close(L);
    return rc;
}

TEST(a_loop_is_stopped_at_its_budget)
{
    bool cut;
    uint64_t took;
    char msg[256];
    CHECK(run("local x = 0 while true do x = x + 1 end", 100, &cut, &took, msg, sizeof msg) == LUA_ERRRUN);
    CHECK(cut);
    CHECK(took >= 100);
    CHECK(strstr(msg, "took longer than 100 ms without yielding") != NULL);
    CHECK(sp_lua_budget_exceeded() >= 1);
}

TEST(a_pcall_does_not_keep_it_going)
{
    bool cut;
    uint64_t took;
    char msg[256];
    CHECK(run("while true do pcall(function() while true do end end) end", 100, &cut, &took, msg,
              sizeof msg) == LUA_ERRRUN);
    CHECK(cut);
}

TEST(a_run_within_its_budget_is_left_alone)
{
    bool cut = true;
    uint64_t took;
    char msg[256];
    CHECK(run("local x = 0 for i = 1, 1000 do x = x + i end", 5000, &cut, &took, msg, sizeof msg) == 0);
    CHECK(!cut);
    /* and the next run is not hit by an old hook */
    CHECK(run("local s = 0 for i = 1, 100000 do s = s + i end", 5000, &cut, &took, msg, sizeof msg) == 0);
    CHECK(!cut);
}

TEST(memory_is_capped_inside_runs)
{
    lua_State *L = sp_lua_state_new(32u << 20);
    REQUIRE(L != NULL);
    luaL_openlibs(L);
    REQUIRE(luaL_loadstring(L, "local s = 'x' while true do s = s .. s end") == 0);
    sp_lua_budget_enter(L, 0);
    int rc = lua_pcall(L, 0, 0, 0);
    sp_lua_budget_leave(NULL);
    CHECK(rc == LUA_ERRMEM);
    CHECK(sp_lua_state_memory(L) <= 32u << 20);
    lua_settop(L, 0);
    sp_lua_state_reclaim(L);
    CHECK(sp_lua_state_memory(L) < 16u << 20); /* LuaJIT keeps a string buffer, halved per cycle */
    /* the state still works after the error */
    REQUIRE(luaL_loadstring(L, "return #string.rep('a', 1000)") == 0);
    sp_lua_budget_enter(L, 0);
    CHECK(lua_pcall(L, 0, 1, 0) == 0 && lua_tointeger(L, -1) == 1000);
    sp_lua_budget_leave(NULL);
    sp_lua_state_close(L);
}

int main(int argc, char **argv)
{
    if (sp_lua_budget_register(&budget, "test") != 0)
        return 1;
    static const unit_test tests[] = {
        UNIT(a_loop_is_stopped_at_its_budget), UNIT(a_pcall_does_not_keep_it_going),
        UNIT(a_run_within_its_budget_is_left_alone), UNIT(memory_is_capped_inside_runs),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
