# Sourced by scripts/test and .ci/run: the servers the infrastructure tests start
# themselves (shared/tests/infra/): PostgreSQL clusters of their own
# (initdb/pg_ctl) and PgBouncer as the stand-in for RDS Proxy.

# pg_bindir: the directory of initdb and pg_ctl, or nothing.
pg_bindir() {
  local d found=""
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && found=$d; done
  if [ -z "$found" ] && command -v initdb >/dev/null 2>&1; then found=$(dirname "$(command -v initdb)"); fi
  echo "$found"
}

pgbouncer_path() {
  command -v pgbouncer 2>/dev/null || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; } || true
}

# ensure_infra_tools: installs what is missing from the machine's package manager
# (Debian/Ubuntu, as root: CI), then requires the tests to run (INFRA_TESTS=required).
ensure_infra_tools() {
  local missing=()
  [ -n "$(pgbouncer_path)" ] || missing+=(pgbouncer)
  [ -n "$(pg_bindir)" ] || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} (apt-get)…" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
  [ -n "$(pgbouncer_path)" ] || { echo "pgbouncer is not installed after apt-get" >&2; exit 1; }
  [ -n "$(pg_bindir)" ] || { echo "initdb/pg_ctl are not installed after apt-get" >&2; exit 1; }
  export INFRA_TESTS=required
}

# report_infra_tools: says which infrastructure tests will be skipped here, and how
# to install what they need (they skip themselves too, each with a SKIPPED line).
report_infra_tools() {
  [ "${INFRA_TESTS:-}" = required ] && return 0
  if [ -z "$(pg_bindir)" ]; then
    echo "NOTE: no initdb/pg_ctl: the restart, TLS and pooler tests will be SKIPPED (apt-get install postgresql)." >&2
  fi
  if [ -z "$(pgbouncer_path)" ]; then
    echo "NOTE: no pgbouncer: the pooler test (infra::pgbouncer) will be SKIPPED (apt-get install pgbouncer; .ci/run does)." >&2
  fi
}
