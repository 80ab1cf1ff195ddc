/* apps: the session layer and the applications, wired into net/ at startup.
 *
 * net/ accepts a connection and hands it to the session layer (session/route.h: admit,
 * sniff, route, act) through the hooks of net/app.h; the session starts the application
 * a route needs (the HTTP/1 session of core/http, the Lua socket handler of core/lua),
 * and net/ calls a route's Lua target functions through the hooks of net/target.h. This
 * module installs both, so net/ includes nothing of session/, http/ or lua/. */
#ifndef SP_SESSION_APPS_H
#define SP_SESSION_APPS_H

/* Installs the session hooks and the target functions; once, before any worker starts. */
void sp_session_install(void);

#endif
