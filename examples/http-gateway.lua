-- An HTTP gateway on port 8082, working out of the box: its backend is the proxy's own
-- admin endpoint (127.0.0.1:9105). Each route shows one HTTP feature:
--
--   curl -i http://127.0.0.1:8082/api/stats               forwarded, path rewritten, a response header added
--   curl -i http://127.0.0.1:8082/private/                401 until: -u admin:change-me
--   curl -i http://127.0.0.1:8082/limited                 the 6th request within a minute gets 429
--   curl -i http://127.0.0.1:8082/.git/config             403
--   curl -i http://127.0.0.1:8082/old/anything            308 to /api/stats
--   curl -i http://127.0.0.1:8082/nothing-here            404: no route matched
local admin = { host = "127.0.0.1", port = 9105 }

return {
  metrics = { listen = "127.0.0.1:9105" },
  routes = {
    { name = "stats", match = { ports = 8082, path = "/api/stats" },
      action = { type = "forward", target = admin, rewrite_path = "/stats",
                 headers = { response = { ["X-Served-By"] = "smartproxy {route_name}" } } } },
    { name = "private", match = { ports = 8082, path = "/private/*" },
      action = { type = "forward", target = admin, rewrite_path = "/healthz" },
      security = { basic_auth = { realm = "private", users = { { username = "admin", password = "change-me" } } } } },
    { name = "limited", match = { ports = 8082, path = "/limited" },
      action = { type = "forward", target = admin, rewrite_path = "/healthz" },
      security = { rate_limit = { requests = 5, window = 60 } } },
    { name = "dotfiles", match = { ports = 8082, path = "/.git/*" }, action = { type = "block", protocol = "http" } },
    { name = "old", match = { ports = 8082, path = "/old/*" },
      action = { type = "redirect", redirect = { to = "http://{host}/api/stats", status = 308 } } },
  },
}
