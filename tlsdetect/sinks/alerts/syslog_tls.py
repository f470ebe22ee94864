"""The TLS side of ``syslog+tls://HOST:PORT`` (RFC 5425): a verifying client context from the spec's options.

RFC 5425 is RFC 6587's octet counting inside TLS, conventionally on port 6514. A SIEM collector on 6514
expects TLS from the first byte, so plain TCP there sends nothing a collector can read. Options, in the
spec's query:

* ``ca=FILE``: the PEM bundle the collector's certificate must chain to (default: the system store);
* ``cert=FILE`` and ``key=FILE``: a client certificate, for collectors that authenticate senders
  (rsyslog's ``StreamDriver.AuthMode="x509/certvalid"`` or ``x509/name``); ``key`` defaults to ``cert``;
* ``name=HOSTNAME``: the name the certificate must carry, when it is not the host the URL connects to
  (an address, or a load balancer's name).

A collector that refuses this sensor's client certificate (or wants one it did not get) says so only
after the handshake in TLS 1.3: the client's side of the handshake is already done, and the first
batch would go into a closed connection and be lost while the kernel took it. So a new connection
waits up to ``accept_wait`` seconds (0.5) for that refusal before it sends (:func:`refused_after_handshake`):
an accepted sensor hears nothing or a session ticket; a refused one sees the connection close, within
~25 ms against rsyslog's GnuTLS driver here. The wait is paid once per connection, not per batch.

Verification is never switched off: RFC 5425 section 5.1 allows unauthenticated peers, but alerts that
name intercepted connections must not go to whoever answers on the port.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import Mapping, Sequence

__all__ = ["TlsOptions", "client_context", "refused_after_handshake", "tls_options"]

_KNOWN = ("ca", "cert", "key", "name", "facility", "when_full")


class TlsOptions:
    """What ``syslog+tls://`` verifies against and presents."""

    def __init__(self, ca: str | None, cert: str | None, key: str | None, name: str) -> None:
        self.ca, self.cert, self.key, self.name = ca, cert, key, name


def tls_options(query: Mapping[str, Sequence[str]], host: str) -> TlsOptions:
    """The options of a ``syslog+tls://`` spec; an unknown option is an error (a typo must not skip a check)."""
    unknown = sorted(set(query) - set(_KNOWN))
    if unknown:
        raise ValueError(f"syslog+tls: unknown option(s) {', '.join(unknown)}; known: ca, cert, key, name, facility")

    def one(key: str) -> str | None:
        values = query.get(key)
        return values[-1] if values else None

    cert, key = one("cert"), one("key")
    if key is not None and cert is None:
        raise ValueError("syslog+tls: key= needs cert=")
    return TlsOptions(one("ca"), cert, key or cert, one("name") or host)


def client_context(options: TlsOptions) -> ssl.SSLContext:
    """A TLS client context that verifies the collector (chain and name), TLS 1.2 at least."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if options.cert is not None:
            ctx.load_cert_chain(options.cert, options.key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"syslog+tls: cannot load the TLS files: {exc}") from None
    return ctx


def refused_after_handshake(sock: ssl.SSLSocket, wait: float) -> str | None:
    """Why the collector closed a fresh connection within ``wait`` seconds, or None when it did not."""
    before = sock.gettimeout()
    try:
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return None
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                return "the collector closed the connection after the handshake (does it accept our certificate?)"
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None  # a session ticket: the collector accepted us
        except ssl.SSLError as exc:
            return f"the collector refused this sensor after the handshake: {exc.reason or exc}"
        return None  # a byte from a collector that talks: not a refusal
    except OSError as exc:
        return f"the connection failed after the handshake: {exc}"
    finally:
        sock.settimeout(before)
