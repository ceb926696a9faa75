#!/usr/bin/env bash
# The entrypoint of lockkit-test/mariadb, after the official mariadb image's
# docker-entrypoint.sh: on a first start (no mysql schema in the data
# directory) it installs the system tables, starts a server without
# networking, sets root's password from MARIADB_ROOT_PASSWORD (or allows
# none with MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, or makes one up with
# MARIADB_RANDOM_ROOT_PASSWORD), creates root@MARIADB_ROOT_HOST (%),
# MARIADB_DATABASE, and MARIADB_USER with MARIADB_PASSWORD, runs
# /docker-entrypoint-initdb.d/* (*.sh, *.sql, *.sql.gz, *.sql.xz) and
# stops it; then it runs the command. The server says "ready for
# connections" twice on a first start, once after. MYSQL_* names and
# *_FILE variants are read as the official image reads them.
set -Eeo pipefail

# file_env VAR [DEFAULT]: MARIADB_x from MARIADB_x, MYSQL_x, or the file
# named by MARIADB_x_FILE or MYSQL_x_FILE.
file_env() {
	local var=$1 def=${2:-} mysqlVar="${1/#MARIADB/MYSQL}" val=${2:-}
	local fileVar="${var}_FILE" mysqlFileVar="${mysqlVar}_FILE"
	if [ "${!var:-}" ]; then
		val=${!var}
	elif [ "${!mysqlVar:-}" ]; then
		val=${!mysqlVar}
	elif [ "${!fileVar:-}" ]; then
		val=$(<"${!fileVar}")
	elif [ "${!mysqlFileVar:-}" ]; then
		val=$(<"${!mysqlFileVar}")
	fi
	export "$var"="${val:-$def}"
	unset "$fileVar" "$mysqlFileVar"
}

# sql_string S: S as the body of a single-quoted SQL string.
sql_string() {
	local s=${1//\\/\\\\}
	printf '%s' "${s//\'/\\\'}"
}

if [ "${1:0:1}" = '-' ]; then
	set -- mariadbd "$@"
fi

case "$1" in
mariadbd | mysqld) server=1 ;;
*) server=0 ;;
esac

if [ "$server" = 1 ]; then
	# The data directory and socket the command would use.
	config=$("$@" --verbose --help 2>/dev/null)
	DATADIR=$(awk '/^[^ \t]/ && $1 == "datadir" { print $2; exit }' <<<"$config")
	DATADIR=${DATADIR%/}
	SOCKET=$(awk '/^[^ \t]/ && $1 == "socket" { print $2; exit }' <<<"$config")
	if [ -z "$DATADIR" ] || [ -z "$SOCKET" ]; then
		echo >&2 "error: $1 names no datadir or socket (--verbose --help)"
		exit 1
	fi
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
		chown mysql:mysql "$DATADIR" "$(dirname "$SOCKET")"
		exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
fi

mariadb_init() {
	mariadb --protocol=socket --socket="$SOCKET" -uroot -hlocalhost "$@"
}

if [ "$server" = 1 ] && [ ! -d "$DATADIR/mysql" ]; then
	file_env MARIADB_ROOT_PASSWORD
	file_env MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
	file_env MARIADB_RANDOM_ROOT_PASSWORD
	file_env MARIADB_ROOT_HOST %
	file_env MARIADB_DATABASE
	file_env MARIADB_USER
	file_env MARIADB_PASSWORD
	if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" ] && [ -z "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
		cat >&2 <<-'MSG'
			error: Database is uninitialized and password option is not specified.
			       Set one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
			       and MARIADB_RANDOM_ROOT_PASSWORD.
		MSG
		exit 1
	fi
	if [ -n "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
		MARIADB_ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
		echo "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
	fi

	echo "$0: installing the system tables"
	mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
		--skip-test-db --skip-log-bin --default-time-zone=SYSTEM --expire-logs-days=0 >/dev/null
	"$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" --wsrep_on=OFF \
		--expire-logs-days=0 --skip-log-bin --loose-innodb_buffer_pool_load_at_startup=0 &
	pid=$!
	for _ in $(seq 1 60); do
		if mariadb_init --database=mysql -e 'SELECT 1' >/dev/null 2>&1; then
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo >&2 "error: the set-up server exited"
			exit 1
		fi
		sleep 1
	done

	rootpw=$(sql_string "$MARIADB_ROOT_PASSWORD")
	roothost=$(sql_string "$MARIADB_ROOT_HOST")
	{
		echo "SET @@SESSION.SQL_LOG_BIN=0;"
		echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';"
		echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
		echo "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$rootpw');"
		if [ "$MARIADB_ROOT_HOST" != localhost ]; then
			echo "CREATE USER 'root'@'$roothost' IDENTIFIED BY '$rootpw';"
			echo "GRANT ALL ON *.* TO 'root'@'$roothost' WITH GRANT OPTION;"
			echo "GRANT PROXY ON ''@'%' TO 'root'@'$roothost' WITH GRANT OPTION;"
		fi
		if [ -n "$MARIADB_DATABASE" ]; then
			echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE//\`/\`\`}\`;"
		fi
		if [ -n "$MARIADB_USER" ]; then
			user=$(sql_string "$MARIADB_USER")
			echo "CREATE USER '$user'@'%' IDENTIFIED BY '$(sql_string "$MARIADB_PASSWORD")';"
			if [ -n "$MARIADB_DATABASE" ]; then
				echo "GRANT ALL ON \`${MARIADB_DATABASE//\`/\`\`}\`.* TO '$user'@'%';"
			fi
		fi
	} | mariadb_init --database=mysql --binary-mode

	export MYSQL_PWD=$MARIADB_ROOT_PASSWORD
	db=()
	if [ -n "$MARIADB_DATABASE" ]; then
		db=(--database="$MARIADB_DATABASE")
	fi
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
		*.sql) echo "$0: running $f"; mariadb_init "${db[@]}" <"$f" ;;
		*.sql.gz) echo "$0: running $f"; gunzip -c "$f" | mariadb_init "${db[@]}" ;;
		*.sql.xz) echo "$0: running $f"; xzcat "$f" | mariadb_init "${db[@]}" ;;
		*)
			if [ -e "$f" ]; then
				echo "$0: ignoring $f"
			fi
			;;
		esac
	done
	unset MYSQL_PWD

	kill "$pid"
	wait "$pid" || true
	echo
	echo 'MariaDB init process done. Ready for start up.'
	echo
fi

exec "$@"
