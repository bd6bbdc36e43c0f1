#!/usr/bin/env bash
# Prints the path of a Chromium that can run headless, installing Debian's `chromium` package
# when none is there and this machine can (root and apt-get). Exits non-zero with the reason on
# stderr when it cannot; cli/tests/status_page.rs then skips with that message.
set -u
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
        command -v "$candidate"
        exit 0
    fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "no Chromium here, and apt-get cannot install one (it needs root on Debian)" >&2
    exit 1
fi
log="$(mktemp)"
export DEBIAN_FRONTEND=noninteractive
if ! timeout 600 apt-get install -y -q chromium >"$log" 2>&1; then
    # A fresh machine may not have the package lists yet.
    if ! { timeout 300 apt-get update -q >>"$log" 2>&1 &&
        timeout 600 apt-get install -y -q chromium >>"$log" 2>&1; }; then
        echo "apt-get install chromium failed: $(tail -n 3 "$log" | tr '\n' ' ')" >&2
        rm -f "$log"
        exit 1
    fi
fi
rm -f "$log"
command -v chromium
