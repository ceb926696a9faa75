#!/usr/bin/env bash
# The entrypoint of lockkit-test/postgres, after the official postgres
# image's docker-entrypoint.sh: on a first start (an empty PGDATA) it runs
# initdb with POSTGRES_USER (postgres), POSTGRES_PASSWORD and
# POSTGRES_INITDB_ARGS, allows network clients by POSTGRES_HOST_AUTH_METHOD
# (scram-sha-256 unless set), starts a socket-only server, creates
# POSTGRES_DB (POSTGRES_USER's name), runs /docker-entrypoint-initdb.d/*
# (*.sh, *.sql, *.sql.gz, *.sql.xz) and stops it; then it runs the
# command. The server says "database system is ready to accept
# connections" twice on a first start, once after. *_FILE variants of the
# variables are read as the official image reads them.
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR from VAR, or from the file named by VAR_FILE.
file_env() {
	local var=$1 fileVar="${1}_FILE" def=${2:-} val
	if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
		echo >&2 "error: both $var and $fileVar are set (but are exclusive)"
		exit 1
	fi
	val=$def
	if [ "${!var:-}" ]; then
		val=${!var}
	elif [ "${!fileVar:-}" ]; then
		val=$(<"${!fileVar}")
	fi
	export "$var"="$val"
	unset "$fileVar"
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 700 "$PGDATA"
	chmod 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

psql_init() {
	PGHOST= PGHOSTADDR= PGPASSWORD=$POSTGRES_PASSWORD \
		psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		cat >&2 <<-'MSG'
			error: Database is uninitialized and superuser password is not specified.
			       Set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust to allow
			       every connection without a password.
		MSG
		exit 1
	fi

	initdb_args=(--username="$POSTGRES_USER")
	if [ -n "$POSTGRES_PASSWORD" ]; then
		initdb_args+=(--pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD"))
	fi
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list
	initdb "${initdb_args[@]}" $POSTGRES_INITDB_ARGS
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
	auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
	printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

	# A server on the socket only, for the set-up.
	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
	export PGDATABASE=postgres
	if [ "$POSTGRES_DB" != postgres ]; then
		exists=$(psql_init -tA -v db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
		if [ -z "$exists" ]; then
			psql_init -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
		fi
	fi
	export PGDATABASE=$POSTGRES_DB
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				echo "$0: running $f"
				"$f"
			else
				echo "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) echo "$0: running $f"; psql_init -f "$f" ;;
		*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | psql_init ;;
		*.sql.xz) echo "$0: running $f"; xzcat "$f" | psql_init ;;
		*)
			if [ -e "$f" ]; then
				echo "$0: ignoring $f"
			fi
			;;
		esac
	done
	unset PGDATABASE
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo
	echo 'PostgreSQL init process complete; ready for start up.'
	echo
fi

exec "$@"
