"""``--keylog``: the certificate columns of TLS 1.3 connections whose secrets a key log holds.

Why a module of its own: both capture engines use it and neither should grow for it. The native engine
sends a connection whose ClientHello random is in the key log (:func:`keyed_starts`, one vectorised test
over a window's hello-start packets) to its reassembling lane, which already reads each direction's
encrypted first flight for the flight columns; when the connection is finished, :func:`decrypted_columns`
decrypts those bytes (:mod:`tlsdetect.wire.tls13_flight`) and fills the same certificate columns the
TLS <= 1.2 path fills, once per connection. The tshark engine lets Wireshark decrypt
(``-o tls.keylog_file:FILE``) and says the same ``keylog`` status through :func:`tshark_status`.

The ``keylog`` column (see :mod:`tlsdetect.schema`) says for every TLS 1.3 row of a read with a key log
how it went: ``decrypted``, ``no_key`` (the key log has no secret for this connection), or another
:data:`tlsdetect.wire.tls13_flight.STATUSES` name. Each is counted in the read's stats as ``keylog_<status>``
(``skipped`` for the ones that left the chain unseen), never an exception.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect import schema
from tlsdetect.readers.base import ReadStats
from tlsdetect.readers.pcap.tls_stream import TLS13, Connection, chain_json
from tlsdetect.wire.keylog import KeyLog
from tlsdetect.wire.tls13_flight import decrypt_flight

__all__ = ["KEYLOG_COLUMN", "NO_KEY", "client_random", "count", "decrypted_columns", "keyed_starts", "mark_unkeyed",
           "random_table", "tshark_status"]

KEYLOG_COLUMN = "keylog"
NO_KEY = "no_key"
DECRYPTED = "decrypted"
#: Bytes from a record's start to the ClientHello random: record header 5, handshake header 4, version 2.
RANDOM_AT = 11


def random_table(keylog: KeyLog) -> npt.NDArray[np.void]:
    """The key log's client randoms as a sorted array of 32-byte values (for :func:`keyed_starts`)."""
    values = np.array(sorted(keylog.randoms()), dtype="V32")
    return np.sort(values) if len(values) else np.zeros(0, dtype="V32")


def keyed_starts(buf: npt.NDArray[np.uint8], payload: npt.NDArray[np.int64], plen: npt.NDArray[np.int64],
                 table: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Which hello-start packets (payload offsets ``payload`` in ``buf``, lengths ``plen``) are ClientHellos
    whose random is in ``table``: one gather of 32 bytes per packet and one sorted lookup."""
    n = len(payload)
    out = np.zeros(n, dtype=bool)
    if n == 0 or len(table) == 0:
        return out
    whole = np.flatnonzero(plen >= RANDOM_AT + 32)
    if len(whole) == 0:
        return out
    at = payload[whole]
    hello = buf[at + 5] == 1
    whole, at = whole[hello], at[hello]
    if len(whole) == 0:
        return out
    grid = buf[(at + RANDOM_AT)[:, None] + np.arange(32)[None, :]]
    randoms = np.ascontiguousarray(grid).view("V32").reshape(-1)
    pos = np.minimum(np.searchsorted(table, randoms), len(table) - 1)
    out[whole] = table[pos] == randoms
    return out


def client_random(data: bytes) -> bytes | None:
    """The random of the ClientHello that ``data`` (a client direction from its first record) starts with."""
    if len(data) < RANDOM_AT + 32 or data[0] != 22 or data[5] != 1:
        return None
    return data[RANDOM_AT : RANDOM_AT + 32]


def count(stats: ReadStats, status: str) -> None:
    """``keylog_<status>``: decrypted ones in ``counts``, the rest (chain unseen) in ``skipped``."""
    (stats.counts if status == DECRYPTED else stats.skipped)[f"keylog_{status}"] += 1


def decrypted_columns(conn: Connection, keylog: KeyLog, stats: ReadStats) -> dict[str, object]:
    """The ``keylog`` status and certificate columns of a finished TLS 1.3 connection; {} for any other."""
    client_key = next((k for k, v in conn.views.items() if v.client_hellos), None)
    if client_key is None:
        return {}
    client, server = conn.views[client_key], conn.views.get(not client_key)
    if server is None or not server.server_hellos or server.server_hellos[-1].version != TLS13:
        return {}
    sh = server.server_hellos[-1]
    random = client_random(client.data)
    secret = None if random is None else keylog.server_hs.get(random)
    if secret is None:
        count(stats, NO_KEY)
        return {KEYLOG_COLUMN: NO_KEY}
    flight = decrypt_flight(server.data, secret, sh.cipher)
    count(stats, flight.status)
    out: dict[str, object] = {KEYLOG_COLUMN: flight.status}
    if flight.certificates:
        leaf = flight.certificates[0]
        out.update(server_subject=leaf.subject, server_issuer=leaf.issuer, server_issuer_akid=leaf.akid,
                   server_cert_sha256=leaf.sha256, server_chain=chain_json(flight.certificates))
    client_secret = keylog.client_hs.get(random) if random is not None else None
    if client_secret is not None:  # mTLS: the client's flight under its own handshake secret
        mine = decrypt_flight(client.data, client_secret, sh.cipher)
        if mine.certificates:
            leaf = mine.certificates[0]
            out.update(peer_subject=leaf.subject, peer_issuer=leaf.issuer, peer_issuer_akid=leaf.akid,
                       peer_cert_sha256=leaf.sha256)
    return out


def tshark_status(has_chain: bool, random: bytes | None, keylog: KeyLog, resumed: bool | None) -> str:
    """The ``keylog`` status of a TLS 1.3 row the tshark engine read with a key log: Wireshark says only
    whether it decrypted, so a keyed flight without a chain is ``no_certificate`` when the session was
    resumed and ``decrypt_failed`` otherwise."""
    if has_chain:
        return DECRYPTED
    if random is None or random not in keylog.server_hs:
        return NO_KEY
    return "no_certificate" if resumed else "decrypt_failed"


def mark_unkeyed(df: pd.DataFrame, stats: ReadStats) -> pd.DataFrame:
    """``no_key`` on the TLS 1.3 rows of a read with a key log that no other status reached (the native
    engine's fast lane takes the connections the key log has no secret for)."""
    if not len(df) or "sh_selected_version" not in df.columns:
        return df
    status = df[KEYLOG_COLUMN] if KEYLOG_COLUMN in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    tls13 = (df["sh_selected_version"] == TLS13).fillna(False).to_numpy(dtype=bool)
    unmarked = tls13 & status.isna().to_numpy()
    if unmarked.any():
        status = schema.as_category(status.astype("string").mask(unmarked, NO_KEY))  # the schema dtype again
        stats.skipped[f"keylog_{NO_KEY}"] += int(unmarked.sum())
        df = df.assign(**{KEYLOG_COLUMN: status})
    return df
