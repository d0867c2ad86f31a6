#!/bin/sh
# Entrypoint of HostCraft's locally built Redis image: like the official image, it runs
# redis-server as the redis user with /data as its working directory, where dump.rdb lives.
set -eu

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = "redis-server" ] && [ "$(id -u)" = 0 ]; then
	chown -R redis:redis /data
	exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi

exec "$@"
