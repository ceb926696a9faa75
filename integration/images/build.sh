#!/usr/bin/env bash
# Builds the images that lockkit's tests run through Testcontainers, from
# Debian's packages, for a Docker engine that reaches no image registry:
#
#	lockkit-test/debian:bookworm   the base: debootstrap's minbase, imported
#	lockkit-test/postgres:15       Debian's postgresql-15
#	lockkit-test/mariadb:10.11     Debian's mariadb-server
#	lockkit-test/redis:7           Debian's redis-server
#
# The tests use them with LOCKKIT_TEST_IMAGES=local (README, Testing). The
# server images' entrypoints follow the official postgres, mariadb and
# redis images' conventions (POSTGRES_* and MARIADB_* variables,
# /docker-entrypoint-initdb.d, a first start that initialises the data
# and restarts the server), so the same tests and Testcontainers' modules
# work on either set.
#
# Idempotent: an image is skipped when one of that name exists and was
# built from the same sources (a label holds their hash), so a second run
# takes a second. The base comes from the Debian mirror in this machine's
# apt sources, read at run time, and gets the host's apt settings for the
# Release file's dates (a snapshot mirror's Release has expired). Runs as
# root (debootstrap); installs debootstrap when it is missing.
#
# Usage: integration/images/build.sh [-f]   (-f: rebuild every image)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
repo=lockkit-test
base="$repo/debian:$suite"
label=dev.lockkit.images.source
# The classic builder: the Docker client may have no buildx plugin.
export DOCKER_BUILDKIT=0

force=0
case "${1:-}" in
-f) force=1 ;;
"") ;;
*)
	echo "usage: $0 [-f]" >&2
	exit 2
	;;
esac

log() { printf '== images: %s\n' "$*"; }

# current NAME: prints the source hash an existing image was built from.
current() { docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null || true; }

# replaced NAME: notes the image that NAME names before it is rebuilt, to
# remove once nothing is built on it any more (the end of the script).
replaced=()
replaced() {
	local id
	id=$(docker image inspect -f '{{.Id}}' "$1" 2>/dev/null) || return 0
	replaced=("$id" "${replaced[@]}")
}

# hash FILE...: one hash of the files' contents and names, and of the base
# image when it is not the base itself.
hash() {
	{
		for f in "$@"; do
			printf '%s\n' "${f#"$here"/}"
			cat "$f"
		done
		printf 'base %s\n' "${base_id:-}"
	} | sha256sum | cut -c1-16
}

# apt_setting NAME: the host's value of an apt option, empty when unset.
apt_setting() { apt-config dump "$1" | sed -n "s/^$1 \"\\(.*\\)\";\$/\\1/p" | tail -n 1; }

build_base() {
	local h mirror rootfs opt v
	h=$(hash "$here/build.sh")
	if [ "$force" = 0 ] && [ "$(current "$base")" = "$h" ]; then
		log "$base is up to date"
		return
	fi
	# The mirror that serves the suite's main component to this machine.
	mirror=$(apt-get indextargets --format '$(REPO_URI)' "Release: $suite" "Component: main" "Identifier: Packages" | head -n 1)
	if [ -z "$mirror" ]; then
		echo "images: no apt source of this machine serves $suite main" >&2
		exit 1
	fi
	if ! command -v debootstrap >/dev/null; then
		log "installing debootstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi
	rootfs=$(mktemp -d "${TMPDIR:-/tmp}/lockkit-rootfs.XXXXXX")
	# shellcheck disable=SC2064 # expand now: the trap outlives the local
	trap "rm -rf '$rootfs' '$tmplog'" EXIT
	log "debootstrap $suite (minbase)"
	if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$tmplog" 2>&1; then
		tail -n 20 "$tmplog" >&2
		exit 1
	fi
	# The host's settings for the Release file's dates, so that apt inside
	# the images accepts the same (snapshot) mirror.
	for opt in Acquire::Check-Valid-Until Acquire::Check-Date; do
		v=$(apt_setting "$opt")
		if [ -n "$v" ]; then
			printf '%s "%s";\n' "$opt" "$v" >>"$rootfs/etc/apt/apt.conf.d/99lockkit-release-dates"
		fi
	done
	# As in Debian's official images: no service starts during a package's
	# installation, and apt keeps no caches or translations.
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 755 "$rootfs/usr/sbin/policy-rc.d"
	printf 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n' >"$rootfs/etc/apt/apt.conf.d/99lockkit-slim"
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	log "importing $base"
	replaced "$base"
	tar -C "$rootfs" -c . | docker import \
		--change "LABEL $label=$h" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
		--change 'CMD ["bash"]' \
		- "$base" >/dev/null
	rm -rf "$rootfs"
	trap 'rm -f "$tmplog"' EXIT
}

build_server() { # directory, image name
	local dir=$here/$1 name=$2 h
	h=$(hash "$dir"/*)
	if [ "$force" = 0 ] && [ "$(current "$name")" = "$h" ]; then
		log "$name is up to date"
		return
	fi
	log "building $name"
	replaced "$name"
	if ! docker build --force-rm --build-arg "BASE=$base" --label "$label=$h" -t "$name" "$dir" >"$tmplog" 2>&1; then
		tail -n 30 "$tmplog" >&2
		exit 1
	fi
}

if ! docker info >/dev/null 2>&1; then
	echo "images: no Docker engine answers (docker info)" >&2
	exit 1
fi
tmplog=$(mktemp "${TMPDIR:-/tmp}/lockkit-images.XXXXXX")
trap 'rm -f "$tmplog"' EXIT
build_base
base_id=$(docker image inspect -f '{{.Id}}' "$base")
build_server postgres "$repo/postgres:15"
build_server mariadb "$repo/mariadb:10.11"
build_server redis "$repo/redis:7"
# The images these replaced, newest first so that a server image goes
# before the base it was built on; one still in use by a container stays.
for id in "${replaced[@]}"; do
	if [ -z "$(docker image inspect -f '{{join .RepoTags " "}}' "$id" 2>/dev/null)" ]; then
		docker rmi "$id" >/dev/null 2>&1 || true
	fi
done
