#!/usr/bin/env bash
# Install Debian's chromium for the live sessions page's browser test (tests/test_dashboard.py).
#
# Idempotent and quiet: does nothing when /usr/bin/chromium exists. Without root or apt-get, or
# when apt-get fails, it says why and exits 0: the browser test then skips with a clear message.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "install_browser: $CHROMIUM already installed"
    exit 0
fi
if [ "${EUID}" -ne 0 ]; then
    echo "install_browser: not root, chromium not installed (the browser test will skip)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: apt-get not available, chromium not installed (the browser test will skip)"
    exit 0
fi

echo "install_browser: installing chromium with apt-get"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    # Not fatal: the browser test skips with a clear message where no browser can be installed.
    echo "install_browser: apt-get failed, chromium not installed (the browser test will skip)" >&2
    exit 0
fi
echo "install_browser: installed $("$CHROMIUM" --version 2>/dev/null || echo chromium)"
