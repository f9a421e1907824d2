# For .ci/run, before `make test`: tests/e2e/test_pgbouncer.py needs PgBouncer (it fails, never skips, under CI=true).
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer
  # Debian's package enables and starts its own service on 6432; the test runs a private one on a free port.
  (command -v systemctl >/dev/null 2>&1 && systemctl disable --now pgbouncer) >/dev/null 2>&1 || true
  service pgbouncer stop >/dev/null 2>&1 || true
fi
