-- Quickstart: port 8080 forwards to smartproxy's own admin endpoint, so there is
-- something to see with nothing else running:
--
--   curl http://127.0.0.1:8080/stats     (the JSON counts the request that fetched it)
--
-- Replace the target with your own service: target = { host = "10.0.0.5", port = 80 }.
return {
  workers = 2,
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9100" },
  timeouts = { connect = 5000, graceful_shutdown = 5000 },
  routes = {
    {
      name = "quickstart",
      match = { ports = 8080 },
      action = { type = "forward", target = { host = "127.0.0.1", port = 9100 } },
    },
  },
}
