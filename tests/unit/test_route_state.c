/* Per-worker route state (core/net/route_state.c): each worker's table cycles its own
 * round-robin cursor over a route's targets, and every table finds the same shared
 * figures for a route name. */
#include "net/route_state.h"

#include "unit.h"

static sp_target targets[3] = {{.host = "a"}, {.host = "b"}, {.host = "c"}};

/* Routes as a generation holds them: index is the 1-based place. */
static sp_route routes[2] = {
    {.name = "web", .index = 1, .targets = targets, .ntargets = 3},
    {.name = "api", .index = 2, .targets = targets, .ntargets = 2},
};

TEST(each_worker_cycles_its_own_cursor)
{
    sp_route_states *w1 = sp_route_states_new(2, NULL), *w2 = sp_route_states_new(2, NULL);
    REQUIRE(w1 && w2);
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[0])->host, "a");
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[0])->host, "b");
    CHECK_STR_EQ(sp_route_next_target(w2, &routes[0])->host, "a"); /* worker 2 starts at the first */
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[0])->host, "c");
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[0])->host, "a"); /* round and round */
    CHECK_STR_EQ(sp_route_next_target(w2, &routes[0])->host, "b");
    /* another route of the same generation has a cursor of its own */
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[1])->host, "a");
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[1])->host, "b");
    CHECK_STR_EQ(sp_route_next_target(w1, &routes[1])->host, "a");
    sp_route_states_unref(w1);
    sp_route_states_unref(w2);
}

TEST(a_new_generation_starts_its_cursors_afresh)
{
    sp_route_states *old = sp_route_states_new(2, NULL);
    REQUIRE(old);
    sp_route_states *held = sp_route_states_ref(old); /* a connection on the old generation */
    sp_route_next_target(old, &routes[0]);
    sp_route_states_unref(old);                       /* the worker moves on */
    sp_route_states *now = sp_route_states_new(2, NULL);
    REQUIRE(now);
    CHECK_STR_EQ(sp_route_next_target(now, &routes[0])->host, "a");
    CHECK_STR_EQ(sp_route_next_target(held, &routes[0])->host, "b"); /* the old one still counts */
    sp_route_states_unref(held);
    sp_route_states_unref(now);
}

TEST(workers_share_the_figures_of_a_route_name)
{
    sp_route_limits *limits = sp_route_limits_new();
    REQUIRE(limits);
    sp_route_states *w1 = sp_route_states_new(2, limits), *w2 = sp_route_states_new(2, limits);
    REQUIRE(w1 && w2);
    sp_route_counter *web = sp_route_counter_of(w1, &routes[0]);
    REQUIRE(web);
    CHECK(sp_route_counter_of(w1, &routes[0]) == web); /* looked up once, then cached */
    CHECK(sp_route_counter_of(w2, &routes[0]) == web); /* one figure per name across workers */
    CHECK(sp_route_counter_of(w1, &routes[1]) != web);
    CHECK(sp_route_limits_get(limits, "web") == web);
    sp_route_states_unref(w1);
    sp_route_states_unref(w2);
    sp_route_limits_free(limits);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(each_worker_cycles_its_own_cursor),
        UNIT(a_new_generation_starts_its_cursors_afresh),
        UNIT(workers_share_the_figures_of_a_route_name),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
