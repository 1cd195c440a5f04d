# Sourced by scripts/test and scripts/dev: make sure a PostgreSQL server answers.
#
# Uses DATABASE_URL if set (and fails if nothing answers there), else the local
# server on 127.0.0.1:5432, else starts a throwaway cluster from the installed
# PostgreSQL binaries for the lifetime of the calling script.

DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres

# pg_answers URL: true when a server accepts connections there.
pg_answers() {
  local url=$1
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$url" -t 3
  else
    # host:port from the URL, then a bare TCP connect.
    local hostport=${url#*@}; hostport=${hostport%%/*}
    local host=${hostport%:*} port=${hostport##*:}
    [ "$host" = "$port" ] && port=5432
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

# Starts a throwaway cluster on 127.0.0.1:$1 and exports DATABASE_URL to it.
start_throwaway_postgres() {
  local port=$1 bindir=""
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bindir=$d; done
  if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then bindir=$(dirname "$(command -v initdb)"); fi
  if [ -z "$bindir" ]; then
    cat >&2 <<'MSG'
No PostgreSQL server answers and no PostgreSQL binaries are installed.
Either point DATABASE_URL at a server (postgres://user@host:port/db), or install
PostgreSQL (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)
and run this command again.
MSG
    exit 1
  fi
  PG_TMP=$(mktemp -d /tmp/dailypot-pg.XXXXXX)
  local run=()
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root: run it as the postgres user.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$PG_TMP"
    run=(setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups)
  fi
  "${run[@]}" "$bindir/initdb" -D "$PG_TMP/data" -U postgres -A trust >"$PG_TMP/initdb.log" 2>&1 \
    || { cat "$PG_TMP/initdb.log" >&2; exit 1; }
  "${run[@]}" "$bindir/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_TMP -c max_connections=300 -c fsync=off" \
    start >/dev/null || { cat "$PG_TMP/server.log" >&2; exit 1; }
  PG_STOP=("${run[@]}" "$bindir/pg_ctl" -D "$PG_TMP/data" -m immediate stop)
  trap 'stop_throwaway_postgres' EXIT
  export DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres
  echo "Started a throwaway PostgreSQL on 127.0.0.1:$port ($bindir); it stops when this script ends." >&2
}

stop_throwaway_postgres() {
  "${PG_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
}

# ensure_postgres PORT: DATABASE_URL answers afterwards, or the script has exited.
ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_answers "$DATABASE_URL" && return 0
    echo "DATABASE_URL is set but no PostgreSQL server answers there." >&2
    exit 1
  fi
  if pg_answers "$DEFAULT_DATABASE_URL"; then
    export DATABASE_URL=$DEFAULT_DATABASE_URL
    return 0
  fi
  start_throwaway_postgres "$1"
}
