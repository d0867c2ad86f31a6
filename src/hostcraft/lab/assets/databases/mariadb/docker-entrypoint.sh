#!/bin/sh
# Entrypoint of HostCraft's locally built MariaDB image. It reads the same variables as the
# official image (MARIADB_ROOT_PASSWORD, MARIADB_DATABASE, MARIADB_USER, MARIADB_PASSWORD, or
# their MYSQL_* names) and initializes an empty data directory on the first start.
set -eu

DATADIR=/var/lib/mysql
ROOT_PASSWORD="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
DATABASE="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
USER_NAME="${MARIADB_USER:-${MYSQL_USER:-}}"
USER_PASSWORD="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"

# Quote a value for a single-quoted SQL string literal.
sql_string() {
	printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g"
}

# Quote a value for a backquoted SQL identifier.
sql_identifier() {
	printf '%s' "$1" | sed -e 's/`/``/g'
}

initialize() {
	if [ -z "$ROOT_PASSWORD" ]; then
		echo "error: the database is uninitialized and MARIADB_ROOT_PASSWORD is not set; start the container with -e MARIADB_ROOT_PASSWORD=..." >&2
		exit 1
	fi
	mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
		--auth-root-authentication-method=normal >/dev/null

	# A server on a private socket only, so nothing outside reaches a half-initialized database.
	socket=/run/mysqld/init.sock
	mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$socket" &
	pid=$!
	tries=0
	until mariadb-admin --socket="$socket" --user=root ping >/dev/null 2>&1; do
		tries=$((tries + 1))
		if [ "$tries" -gt 60 ]; then
			echo "error: the initialization server did not start within 60 s" >&2
			exit 1
		fi
		sleep 1
	done

	root="$(sql_string "$ROOT_PASSWORD")"
	{
		# The install script also makes root accounts for 127.0.0.1, ::1 and the host name
		# without a password; root@% below replaces them.
		echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host NOT IN ('localhost', '%'));"
		echo "FLUSH PRIVILEGES;"
		echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$root';"
		echo "CREATE USER 'root'@'%' IDENTIFIED BY '$root';"
		echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
		if [ -n "$DATABASE" ]; then
			echo "CREATE DATABASE IF NOT EXISTS \`$(sql_identifier "$DATABASE")\`;"
		fi
		if [ -n "$USER_NAME" ] && [ -n "$USER_PASSWORD" ]; then
			echo "CREATE USER '$(sql_string "$USER_NAME")'@'%' IDENTIFIED BY '$(sql_string "$USER_PASSWORD")';"
			if [ -n "$DATABASE" ]; then
				echo "GRANT ALL ON \`$(sql_identifier "$DATABASE")\`.* TO '$(sql_string "$USER_NAME")'@'%';"
			fi
		fi
		echo "FLUSH PRIVILEGES;"
		if [ -n "$DATABASE" ]; then
			echo "USE \`$(sql_identifier "$DATABASE")\`;"
		fi
		for script in /docker-entrypoint-initdb.d/*.sql; do
			[ -f "$script" ] && cat "$script"
		done
		# The root password changed above, so shut down from this same session.
		echo "SHUTDOWN;"
	} | mariadb --socket="$socket" --user=root
	wait "$pid"
	echo "MariaDB init process complete; ready for start up."
}

if [ "${1:-}" = "mariadbd" ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$DATADIR" /run/mysqld
	chown mysql:mysql "$DATADIR" /run/mysqld
	if [ ! -d "$DATADIR/mysql" ]; then
		initialize
	fi
	shift
	exec mariadbd --user=mysql "$@"
fi

exec "$@"
