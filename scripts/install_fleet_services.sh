#!/usr/bin/env bash
# Install Debian's redis-server and haproxy, which the fleet tests (tests/fleet/) and
# scripts/fleet run as their own processes on loopback ports.
#
# Idempotent and quiet: does nothing when both programs exist. It never starts, enables or
# restarts the system services: the tests start their own processes. Without root or apt-get,
# or when apt-get fails, it says why and exits 0: the fleet tests then skip with a clear message.
set -euo pipefail

# The program each package brings (Debian puts haproxy in /usr/sbin, often not on PATH).
declare -A PROGRAM=([redis-server]=redis-server [haproxy]=haproxy)

found() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ] \
        || [ -x "/sbin/$1" ]
}

missing=()
for package in redis-server haproxy; do
    found "${PROGRAM[$package]}" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_fleet_services: redis-server and haproxy already installed"
    exit 0
fi
if [ "${EUID}" -ne 0 ]; then
    echo "install_fleet_services: not root, ${missing[*]} not installed (the fleet tests will skip)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_fleet_services: apt-get not available, ${missing[*]} not installed (the fleet tests will skip)"
    exit 0
fi

echo "install_fleet_services: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
policy=""
cleanup() {
    rm -f "$log"
    [ -z "$policy" ] || rm -f "$policy"
}
trap cleanup EXIT
# Installing a daemon's package would start its service (invoke-rc.d asks policy-rc.d first):
# answer 101, "action not allowed", while we install, unless a policy is already in place.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi
install() {
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
}
# The package lists may already be fresh enough; update them only when the install needs it.
if ! install >"$log" 2>&1; then
    if ! { apt-get update -qq && install; } >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        # Not fatal: the fleet tests skip with a clear message where the programs are missing.
        echo "install_fleet_services: apt-get failed, ${missing[*]} not installed (the fleet tests will skip)" >&2
        exit 0
    fi
fi
for package in "${missing[@]}"; do
    if ! found "${PROGRAM[$package]}"; then
        echo "install_fleet_services: $package installed but ${PROGRAM[$package]} not found" >&2
    fi
done
echo "install_fleet_services: installed ${missing[*]}"
