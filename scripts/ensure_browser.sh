#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright's own download cannot be fetched here).
# Installs it when /usr/bin/chromium is missing; prints its version. Needs root (or sudo) the first time.
set -euo pipefail
BROWSER=/usr/bin/chromium
if [ ! -x "$BROWSER" ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "chromium is missing and this user cannot install it: run" \
            "'apt-get install -y chromium' as root" >&2; exit 1; }
        SUDO="sudo -n"
    fi
    echo "installing chromium (Debian package) for the browser tests..." >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null || true
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
"$BROWSER" --version 2>/dev/null || true
