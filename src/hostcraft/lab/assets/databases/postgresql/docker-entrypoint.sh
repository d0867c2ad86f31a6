#!/bin/sh
# Entrypoint of HostCraft's locally built PostgreSQL image. It reads the same variables as the
# official image (POSTGRES_PASSWORD, POSTGRES_USER, POSTGRES_DB, PGDATA) and initializes an
# empty data directory on the first start. Unlike the official image, connections over TCP,
# loopback included, need the password; only the Unix socket inside the container trusts users.
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

if [ "${1:-}" = "postgres" ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 2775 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

run_init_scripts() {
	for script in /docker-entrypoint-initdb.d/*; do
		case "$script" in
			*.sh) echo "running $script"; . "$script" ;;
			*.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$script" ;;
			*) ;;
		esac
	done
}

if [ "${1:-}" = "postgres" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set; start the container with -e POSTGRES_PASSWORD=..." >&2
		exit 1
	fi
	POSTGRES_USER="${POSTGRES_USER:-postgres}"
	POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
	export POSTGRES_USER POSTGRES_DB

	password_file="$(mktemp)"
	printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
	initdb --username="$POSTGRES_USER" --pwfile="$password_file" --encoding=UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 ${POSTGRES_INITDB_ARGS:-}
	rm -f "$password_file"
	printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	# A server on the socket only, so nothing outside reaches a half-initialized database.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
	if [ "$POSTGRES_DB" != "postgres" ]; then
		# psql interpolates :"db" (quoted as an identifier) only in input it reads, not in -c.
		echo 'CREATE DATABASE :"db";' | psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
			--dbname postgres --set db="$POSTGRES_DB"
	fi
	run_init_scripts
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
