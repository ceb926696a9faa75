#!/bin/sh
# The entrypoint of lockkit-test/redis, after the official redis image's:
# arguments that start with "-", or a configuration file, go to
# redis-server; the server runs as redis. Debian's Redis starts in
# protected mode, which refuses every client but loopback ones when no
# password is set — and a published port's clients come from the bridge —
# so "--protected-mode no" is added unless the arguments name the mode,
# which is what the official image's build does to its default.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = redis-server ]; then
	case " $* " in
	*protected-mode*) ;;
	*) set -- "$@" --protected-mode no ;;
	esac
fi

exec "$@"
