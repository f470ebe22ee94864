#!/usr/bin/env bash
# Set up tlsdetect on a fresh Debian machine: tshark (the second engine and the JA3 oracle of the
# tests) from Debian, and the package with its dev extras in .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v tshark >/dev/null 2>&1 || ! command -v capinfos >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Answer wireshark-common's "may non-root users capture?" question so apt never prompts.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends tshark >/dev/null
fi

# Chromium is one of the real TLS clients of the evaluation corpus (issue 4).
if ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# mitmproxy is a tool the capture scripts drive, not a library of ours: it pins an older
# cryptography, so it lives in its own venv under .tools/.
if [ ! -x .tools/mitmproxy/bin/mitmdump ]; then
    python3 -m venv .tools/mitmproxy
    .tools/mitmproxy/bin/python -m pip install -q 'mitmproxy>=11,<12'
fi
echo "tlsdetect is set up: $(.venv/bin/tlsdetect --version)"
