#!/bin/sh
# First start: a cluster whose superuser "jupyterhub" has the password in the secret file, and
# the database "jupyterhub". Every start: PostgreSQL as the postgres user, password logins only.
set -eu
pwfile=/run/hs-secrets/db/postgres_password
[ -s "$pwfile" ] || { echo "db: $pwfile is missing or empty (docs/deployment.md, Secrets)" >&2; exit 1; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    tmp="$(mktemp)"; trap 'rm -f "$tmp"' EXIT
    head -n 1 "$pwfile" >"$tmp"; chown postgres "$tmp"; chmod 600 "$tmp"
    as_postgres initdb -D "$PGDATA" -U jupyterhub --pwfile="$tmp" -A scram-sha-256 -E UTF8 >/dev/null
    rm -f "$tmp"
    echo "CREATE DATABASE jupyterhub OWNER jupyterhub;" | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA"
