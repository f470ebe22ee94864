#!/usr/bin/env bash
# Set up tlsdetect on a fresh Debian machine: tshark (the second engine and the JA3 oracle of the
# tests) from Debian, and the package with its dev extras in .venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian tools: tshark (the second engine and the JA3 oracle of the tests), chromium (a real TLS
# client of the evaluation corpus), wrk (the REST benchmark's load generator) and rsyslog with its
# GnuTLS driver (the real syslog receiver of the streaming end-to-end test and of syslog+tls://).
missing=()
command -v tshark >/dev/null 2>&1 && command -v capinfos >/dev/null 2>&1 || missing+=(tshark)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 || missing+=(rsyslog-gnutls)
# iptables and sslsplit: the inline part of the evaluation corpus (scripts/eval_inline.py) redirects
# clients to interceptors in network namespaces, sslsplit being one of those interceptors; gnutls-bin:
# gnutls-cli is a client stack of both corpus scripts, gnutls-serv the second stack of the server pool.
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v sslsplit >/dev/null 2>&1 || missing+=(sslsplit)
command -v gnutls-cli >/dev/null 2>&1 && command -v gnutls-serv >/dev/null 2>&1 || missing+=(gnutls-bin)
# tcpdump and tcpreplay: the live capture's tests compile its BPF and filter the reference captures
# with tcpdump, and replay a capture at top speed onto lo in a network namespace with tcpreplay
# (dumpcap, the capture process of --source pcap:IFACE, comes with tshark).
command -v tcpdump >/dev/null 2>&1 || [ -x /usr/bin/tcpdump ] || missing+=(tcpdump)
command -v tcpreplay >/dev/null 2>&1 || missing+=(tcpreplay)
# gcc and the Python headers: the compiled capture core (tlsdetect/readers/pcap/_ccore.c) is built at
# install; without them the install still succeeds and the numpy core runs (slower).
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing+=(python3-dev)
# libcrypto's headers: the QUIC Initial kernel (tlsdetect/wire/_quic_crypto.c) links it; without them
# the `cryptography` path opens QUIC Initials (slower).
[ -e /usr/include/openssl/evp.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # Answer wireshark-common's "may non-root users capture?" question so apt never prompts.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# Say which capture core this install runs (the C one, or numpy when the compile failed).
.venv/bin/python -c 'from tlsdetect.readers.pcap import ccore; print("capture core:", ccore.status())'
.venv/bin/python -c 'from tlsdetect.wire import quic_initial as q; print("QUIC kernel:", "libcrypto" if q.NATIVE else "cryptography")'
# Bytecode up front: an editable install leaves it to the first import, and environments with
# PYTHONDONTWRITEBYTECODE never write it, so every command would compile the package again (~55 ms).
.venv/bin/python -m compileall -q tlsdetect
# mitmproxy is a tool the capture scripts drive, not a library of ours: it pins an older
# cryptography, so it lives in its own venv under .tools/.
if [ ! -x .tools/mitmproxy/bin/mitmdump ]; then
    python3 -m venv .tools/mitmproxy
    .tools/mitmproxy/bin/python -m pip install -q 'mitmproxy>=11,<12'
fi
# aioquic is the real HTTP/3 server (and second QUIC client) that scripts/make_quic_captures.py drives
# Chromium against; a tool, not a library of ours, so it too lives in its own venv.
if [ ! -x .tools/aioquic/bin/python ] || ! .tools/aioquic/bin/python -c 'import aioquic' 2>/dev/null; then
    python3 -m venv .tools/aioquic
    .tools/aioquic/bin/python -m pip install -q 'aioquic>=1.2,<2'
fi
echo "tlsdetect is set up: $(.venv/bin/tlsdetect --version)"
