"""The NSS key log format (what ``SSLKEYLOGFILE`` makes browsers, curl and ``openssl s_client -keylogfile``
write): secrets keyed by the ClientHello's random, so a capture's TLS 1.3 handshake can be decrypted.

Why: a TLS 1.3 server sends its certificate chain encrypted, so a capture shows no chain unless the tester
kept the client's key log. Only the two handshake secrets are used (``CLIENT_HANDSHAKE_TRAFFIC_SECRET``,
``SERVER_HANDSHAKE_TRAFFIC_SECRET``): they open the handshake flights and nothing after them, so the
application data stays sealed. ``CLIENT_RANDOM`` (TLS <= 1.2's master secret) is recognised and counted,
never used: those chains travel in clear.

A line is ``LABEL <client random, 64 hex> <secret, hex>``; ``#`` starts a comment. A line that is not
one is a counted, named skip (:attr:`KeyLog.skipped`), never an error: key logs are appended to by
several processes at once and a torn line is common.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["KeyLog", "KeyLogError", "parse_keylog", "read_keylog"]

CLIENT_HS = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HS = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
TLS12 = "CLIENT_RANDOM"
#: Labels of the format that this reader knows and does not need (traffic, early and exporter secrets).
OTHER_LABELS = frozenset({
    "CLIENT_EARLY_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET", "RSA",
})
#: Secret lengths a TLS 1.3 hash gives (SHA-256, SHA-384) and TLS 1.2's master secret.
SECRET_LENGTHS = {CLIENT_HS: (32, 48), SERVER_HS: (32, 48), TLS12: (48,)}
#: A key log bigger than this is not one (a mistyped path to a capture): read no further.
MAX_BYTES = 256 * 1024 * 1024


class KeyLogError(ValueError):
    """The key log cannot be read at all (a path problem); one line for the user."""


@dataclass(slots=True)
class KeyLog:
    """The handshake secrets of a key log, by client random (32 bytes)."""

    client_hs: dict[bytes, bytes] = field(default_factory=dict)
    server_hs: dict[bytes, bytes] = field(default_factory=dict)
    tls12: dict[bytes, bytes] = field(default_factory=dict)
    #: counted skips by name: ``malformed_line``, ``bad_hex``, ``bad_random_length``,
    #: ``bad_secret_length``, ``unknown_label``, ``conflicting_secret``; and ``unused_label`` (known, not needed)
    skipped: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    path: str | None = None

    def randoms(self) -> frozenset[bytes]:
        """Client randoms with a TLS 1.3 handshake secret (the connections worth decrypting)."""
        return frozenset(self.server_hs) | frozenset(self.client_hs)

    def summary(self) -> str:
        """One line for stderr: what the key log gave."""
        skipped = ", ".join(f"{n} {name}" for name, n in sorted(self.skipped.items()))
        return (f"key log {self.path or ''}: {self.lines} lines, {len(self.server_hs)} TLS 1.3 server handshake "
                f"secrets, {len(self.tls12)} TLS 1.2 master secrets" + (f"; skipped: {skipped}" if skipped else ""))


def _add(log: KeyLog, line: bytes) -> None:
    text = line.strip()
    if not text or text.startswith(b"#"):
        return
    log.lines += 1
    parts = text.split()
    if len(parts) != 3:
        log.skipped["malformed_line"] += 1
        return
    try:
        label = parts[0].decode("ascii")
    except UnicodeDecodeError:
        log.skipped["malformed_line"] += 1
        return
    if label in OTHER_LABELS:
        log.skipped["unused_label"] += 1
        return
    if label not in SECRET_LENGTHS:
        log.skipped["unknown_label"] += 1
        return
    try:
        random, secret = bytes.fromhex(parts[1].decode("ascii")), bytes.fromhex(parts[2].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        log.skipped["bad_hex"] += 1
        return
    if len(random) != 32:
        log.skipped["bad_random_length"] += 1
        return
    if len(secret) not in SECRET_LENGTHS[label]:
        log.skipped["bad_secret_length"] += 1
        return
    table = {CLIENT_HS: log.client_hs, SERVER_HS: log.server_hs, TLS12: log.tls12}[label]
    old = table.setdefault(random, secret)
    if old != secret:  # two secrets for one random: the first one stays, the clash is counted
        log.skipped["conflicting_secret"] += 1


def parse_keylog(data: bytes, path: str | None = None) -> KeyLog:
    """The secrets in key log bytes; lines that are not key log lines are counted in ``skipped``."""
    log = KeyLog(path=path)
    for line in data.splitlines():
        _add(log, line)
    return log


def read_keylog(path: str | os.PathLike[str]) -> KeyLog:
    """Read a key log file; :class:`KeyLogError` (one line) when it cannot be read."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise KeyLogError(f"{name}: cannot read the key log ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise KeyLogError(f"{name}: over {MAX_BYTES // (1024 * 1024)} MiB: not a key log")
    return parse_keylog(data, name)
