#!/usr/bin/env python3
"""A minimal real HTTP/3 server and client (aioquic) for the QUIC captures.

Why: Chromium only speaks QUIC to a server that really completes the QUIC + TLS 1.3 handshake and
answers HTTP/3; aioquic's PyPI package has the stack but not its example programs, so this is the
smallest server (and a second client stack) on its public API. It runs in ``.tools/aioquic`` (made
by ``scripts/setup.sh``), never in the package's venv.

    aioquic_peer.py serve CERT KEY PORT [--retry] [--docroot DIR]   # prints "ready" when listening; SIGTERM stops it
    aioquic_peer.py get HOST PORT SNI [--v2]        # one GET /, prints the body
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys
from pathlib import Path

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent
from aioquic.quic.packet import QuicProtocolVersion

DOCROOT: list[Path] = []  # set by ``serve --docroot``: files served by name, anything else gets BODY
BODY = b"<!doctype html><html><body>hello over HTTP/3 from the tlsdetect sample server</body></html>\n"


class H3Peer(QuicConnectionProtocol):
    """Server side: answers every request with BODY. Client side: collects one response."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.h3: H3Connection | None = None
        self.body = b""
        self.done = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = H3Connection(self._quic)
        if self.h3 is None:
            return
        for ev in self.h3.handle_event(event):
            self._h3_event(ev)
        self.transmit()

    def _h3_event(self, ev: H3Event) -> None:
        assert self.h3 is not None
        if self._quic.configuration.is_client:
            if isinstance(ev, DataReceived):
                self.body += ev.data
                if ev.stream_ended:
                    self.done.set()
            return
        if isinstance(ev, HeadersReceived):
            path = dict(ev.headers).get(b":path", b"/").decode(errors="replace").split("?")[0].lstrip("/")
            root = DOCROOT[0] if DOCROOT else None
            file = (root / path) if root is not None and path and "/" not in path else None
            body = file.read_bytes() if file is not None and file.is_file() else BODY
            self.h3.send_headers(ev.stream_id, [(b":status", b"200"), (b"content-type", b"text/html")])
            self.h3.send_data(ev.stream_id, body, end_stream=True)


async def run_server(args: argparse.Namespace) -> None:
    if args.docroot:
        DOCROOT.append(Path(args.docroot))
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(args.cert, args.key)
    server = await serve(args.host, args.port, configuration=config, create_protocol=H3Peer, retry=args.retry)
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


async def run_get(args: argparse.Namespace) -> None:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.sni,
                               verify_mode=ssl.CERT_NONE)
    if args.v2:
        config.original_version = QuicProtocolVersion.VERSION_2
    async with connect(args.host, args.port, configuration=config, create_protocol=H3Peer) as peer:
        assert isinstance(peer, H3Peer)
        assert peer.h3 is not None
        stream = peer._quic.get_next_available_stream_id()
        peer.h3.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"https"),
                                      (b":authority", args.sni.encode()), (b":path", b"/")], end_stream=True)
        peer.transmit()
        await asyncio.wait_for(peer.done.wait(), 20)
        sys.stdout.write(peer.body.decode())


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("cert")
    s.add_argument("key")
    s.add_argument("port", type=int)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--retry", action="store_true", help="answer first Initials with a Retry")
    s.add_argument("--docroot", help="serve the files of this folder by name (one level)")
    g = sub.add_parser("get")
    g.add_argument("host")
    g.add_argument("port", type=int)
    g.add_argument("sni")
    g.add_argument("--v2", action="store_true", help="start with QUIC version 2")
    args = p.parse_args()
    asyncio.run(run_server(args) if args.cmd == "serve" else run_get(args))


if __name__ == "__main__":
    main()
