-- HTTPS with certificates that take care of themselves (docs/certificates.md).
--
-- shop.example.com and www.example.com get certificates from Let's Encrypt (HTTP-01,
-- answered by the proxy on port 80), kept in ./certs as certbot would, renewed 30 days
-- before they expire and swapped in without a restart. internal.example.com comes from
-- the provision hook instead (here: a file your own tooling writes). Port 80 also
-- redirects everything that is not an ACME challenge to HTTPS.
local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

return {
  acme = {
    email = "ops@example.com",
    directory = "https://acme-staging-v02.api.letsencrypt.org/directory",  -- staging first
    challenge_port = 80,
    renew_before_days = 30,
  },
  certificates = {
    store = "./certs",
    provision = function(domain)
      if domain == "internal.example.com" then
        local cert, key = read("/etc/internal-pki/fullchain.pem"), read("/etc/internal-pki/privkey.pem")
        if cert and key then return { cert = cert, key = key } end
        return nil   -- declined: no certificate until the files exist (checked again later)
      end
      return "acme"
    end,
  },
  routes = {
    {
      name = "https",
      match = { ports = 443, domains = { "shop.example.com", "www.example.com", "internal.example.com" } },
      action = { type = "forward", protocol = "http", target = { host = "127.0.0.1", port = 8080 },
                 tls = { mode = "terminate", certificate = "auto" } },
    },
    {
      name = "to-https",
      match = { ports = 80, domains = "*" },
      action = { type = "redirect", redirect = { to = "https://{domain}{path}", status = 301 } },
    },
  },
}
