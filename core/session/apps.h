/* apps: which application serves which kind of route, wired into net/ at startup.
 *
 * net/ sniffs and routes a connection, then starts the application the route needs
 * through the starters of net/app.h (the HTTP/1 session of core/http, the Lua socket
 * handler of core/lua), and calls a route's Lua target functions through the hooks of
 * net/target.h; this module, above all three, is the one place that names them, so net/
 * includes nothing of http/ or lua/. */
#ifndef SP_SESSION_APPS_H
#define SP_SESSION_APPS_H

/* Installs the applications and the target functions; once, before any worker starts. */
void sp_session_install(void);

#endif
