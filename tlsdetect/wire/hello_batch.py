"""Hello messages in bulk: group thousands of hellos by fingerprint input without a Python loop.

Real traffic repeats a handful of TLS stacks, but every hello is byte-unique (random, session
id, key shares, SNI). Parsing each one in Python is the cost that dominates a large capture.
Here all hellos of a window are walked at once with numpy (one gather per field, one loop
iteration per extension *position*, not per hello), and each hello gets a key made of
exactly the bytes its fingerprints depend on (copied out in one ragged gather, each range
length-prefixed so the key is exact, not a hash): version, cipher list, extension type
sequence and the contents of supported_groups, ec_point_formats, signature_algorithms, ALPN
and supported_versions (ServerHello: version, cipher, extension types, supported_versions and
ALPN). Equal keys mean equal fingerprint inputs, so :mod:`tlsdetect.wire.tls` parses one
representative per key and its result is broadcast.

The walk also yields the per-hello values that are not part of a fingerprint (the SNI) and a
``valid`` mask; a hello the walk finds odd is left to the scalar parser, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tlsdetect.wire.gather import Gather
from tlsdetect.wire.tls import HRR_RANDOM

__all__ = ["HelloBatch", "client_hello_batch", "server_hello_batch"]

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]

#: Extensions whose *contents* feed a client fingerprint (JA3: 10, 11; JA4: 13, 16, 43).
CLIENT_CONTENT_EXTS = (0x000A, 0x000B, 0x000D, 0x0010, 0x002B)
SERVER_CONTENT_EXTS = (0x0010, 0x002B)
#: Longest walk over the extension list; a real hello has < 40, Arkime's synthetic one 256.
MAX_EXTENSIONS = 1024


def _lookup(types: tuple[int, ...]) -> B:
    """A table over all 16-bit extension types: True for ``types`` (cheaper than ``np.isin``)."""
    table = np.zeros(1 << 16, dtype=bool)
    table[list(types)] = True
    return table


_CONTENT_TABLES: dict[tuple[int, ...], B] = {
    types: _lookup(types) for types in (CLIENT_CONTENT_EXTS, SERVER_CONTENT_EXTS)
}


@dataclass(slots=True)
class HelloBatch:
    """Per hello: ``valid`` walk, ``key`` (the exact fingerprint-input bytes -> use
    :meth:`codes`), SNI location."""

    valid: B
    key: list[bytes]
    sni_start: I64
    sni_len: I64
    hrr: B
    selected_tls13: B

    def subset(self, sel: I64) -> HelloBatch:
        return HelloBatch(
            self.valid[sel], [self.key[i] for i in sel.tolist()], self.sni_start[sel], self.sni_len[sel],
            self.hrr[sel], self.selected_tls13[sel],
        )

    def codes(self) -> tuple[I64, I64]:
        """(group code per hello, index of one representative hello per group)."""
        index: dict[bytes, int] = {}
        code_of = index.setdefault  # a new key gets the next code: codes count up from 0
        codes = np.array([code_of(k, len(index)) for k in self.key], dtype=np.int64)
        _, first = np.unique(codes, return_index=True)
        return codes, first.astype(np.int64)


def _walk_extensions(g: Gather, ext_start: I64, ext_end: I64, active: B) -> tuple[I64, I64, I64, I64, I64]:
    """All extension headers of all hellos: (owner, type, data_start, data_len, position), in walk
    order (position by position, owners ascending within one)."""
    owners, types, dstarts, dlens, positions = [], [], [], [], []
    pos = ext_start.copy()
    idx = np.flatnonzero(active & (pos + 4 <= ext_end))
    k = 0
    while len(idx) and k < MAX_EXTENSIONS:
        p = pos[idx]
        t = g.be16(p)
        ln = g.be16(p + 2)
        fits = p + 4 + ln <= ext_end[idx]
        owners.append(idx)
        types.append(t)
        dstarts.append(p + 4)
        # Like the scalar parser: an extension whose length overruns keeps its type, no data.
        dlens.append(np.where(fits, ln, -1))
        positions.append(np.full(len(idx), k, dtype=np.int64))
        pos[idx] = p + 4 + ln
        idx = idx[fits & (pos[idx] + 4 <= ext_end[idx])]
        k += 1
    if not owners:
        e = np.empty(0, dtype=np.int64)
        return e, e, e, e, e
    cat = np.concatenate
    return cat(owners), cat(types), cat(dstarts), cat(dlens), cat(positions)


def _byte_keys(buf: U8, owner: I64, salt: I64, starts: I64, lengths: I64, n: int) -> list[bytes]:
    """Per owner, its byte ranges as one ``bytes`` key: each range as (salt, 2-byte length,
    bytes), in the order given (``owner`` ascending, a stable order within an owner).

    Every range is self-delimiting, so equal keys mean equal ranges: grouping is exact, with
    no hash to collide. Ranges of malformed hellos may point anywhere: they are clamped to the
    buffer, so a lying length can only make a key wrong (the hello is then invalid), never read
    out of bounds.
    """
    starts = np.clip(starts, 0, len(buf))
    lengths = np.clip(lengths, 0, np.minimum(len(buf) - starts, 0xFFFF))
    size = lengths + 3
    out_at = np.cumsum(size) - size
    total = int(size.sum())
    out = np.empty(total, dtype=np.uint8)
    out[out_at] = salt.astype(np.uint8)
    out[out_at + 1] = (lengths >> 8).astype(np.uint8)
    out[out_at + 2] = (lengths & 0xFF).astype(np.uint8)
    n_bytes = int(lengths.sum())
    if n_bytes:
        within = np.arange(n_bytes, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[np.repeat(out_at + 3, lengths) + within] = buf[np.repeat(starts, lengths) + within]
    ends = np.cumsum(np.bincount(owner, weights=size, minlength=n).astype(np.int64))
    blob = out.tobytes()
    bounds = [0, *ends.tolist()]
    return [blob[bounds[i] : bounds[i + 1]] for i in range(n)]


def _hash_key(
    g: Gather, n: int, fixed: list[tuple[I64, I64]], ext: tuple[I64, I64, I64, I64, I64], content_exts: tuple[int, ...]
) -> list[bytes]:
    """The fixed byte ranges and the extension list of each hello as one exact key.

    Per hello, in order: the fixed ranges; the two type bytes of every extension header in
    wire order (an overrunning extension, which has no data, marked apart from an empty one);
    the contents of the extensions in ``content_exts``, in wire order.
    """
    owner, etype, dstart, dlen, _ = ext
    hellos = np.arange(n, dtype=np.int64)
    parts_owner = [hellos for _ in fixed]
    parts_salt = [np.full(n, salt, dtype=np.int64) for salt in range(len(fixed))]
    parts_start = [start for start, _ in fixed]
    parts_len = [length for _, length in fixed]
    if len(owner):
        # Owner-major, wire order within an owner: the walk emitted position by position.
        order = np.argsort(owner, kind="stable")
        o, t, ds, dl = owner[order], etype[order], dstart[order], dlen[order]
        bad = dl < 0
        parts_owner.append(o)
        parts_salt.append(np.where(bad, 51, 50))
        parts_start.append(ds - 4)
        parts_len.append(np.full(len(o), 2, dtype=np.int64))
        table = _CONTENT_TABLES.get(content_exts)
        sel = (np.isin(t, content_exts) if table is None else table[t]) & ~bad
        parts_owner.append(o[sel])
        parts_salt.append(np.full(int(sel.sum()), 60, dtype=np.int64))
        parts_start.append(ds[sel])
        parts_len.append(dl[sel])
    cat = np.concatenate
    all_owner = cat(parts_owner)
    # Owner-major, and within an owner the part order above (a stable sort keeps it).
    order = np.argsort(all_owner, kind="stable")
    return _byte_keys(
        g.buf, all_owner[order], cat(parts_salt)[order], cat(parts_start)[order], cat(parts_len)[order], n
    )


def _sni(g: Gather, n: int, ext: tuple[I64, I64, I64, I64, I64]) -> tuple[I64, I64, B]:
    """Start and length of the first server_name entry when it is a host_name that fits."""
    owner, etype, dstart, dlen, _ = ext
    start = np.full(n, -1, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    odd = np.zeros(n, dtype=bool)
    sel = np.flatnonzero(etype == 0)
    if len(sel) == 0:
        return start, length, odd
    # The first SNI extension of each hello (a repeated one is left to the scalar parser).
    o, first = np.unique(owner[sel], return_index=True)
    counts = np.bincount(owner[sel], minlength=n)
    s = sel[first]
    d, ln = dstart[s], dlen[s]
    list_len = g.be16(d)
    name_type = g.u8(d + 2)
    name_len = g.be16(d + 3)
    ok = (ln >= 5) & (list_len + 2 <= ln) & (name_type == 0) & (name_len + 3 <= list_len)
    start[o] = np.where(ok, d + 5, -1)
    length[o] = np.where(ok, name_len, 0)
    odd[o] = ~ok & (ln >= 0) & ~((ln == 0) | (list_len == 0))
    odd |= counts > 1
    return start, length, odd


def _compiled(compiled: bool | None) -> bool:
    from tlsdetect.readers.pcap import ccore  # the capture core holds the C; a wire module stays importable alone

    return ccore.enabled() if compiled is None else compiled


def _hello_walk(buf: U8, body: I64, end: I64, server: bool) -> HelloBatch:
    """The walk in C (``ccore.hello_walk``): one loop per hello instead of a gather per field and position."""
    from tlsdetect.readers.pcap import ccore

    valid, sni_start, sni_len, hrr, tls13, key = ccore.hello_walk(buf, body, end, server)
    return HelloBatch(valid, key, sni_start, sni_len, hrr, tls13)


def client_hello_batch(buf: U8, body: I64, end: I64, compiled: bool | None = None) -> HelloBatch:
    """Walk ClientHello bodies ``buf[body:end]`` (after the 4-byte handshake header); in C with the
    compiled core (``compiled``: None follows ``ccore.enabled()``), else with numpy, its oracle."""
    if _compiled(compiled) and len(body):
        return _hello_walk(buf, body, end, server=False)
    g = Gather(buf)
    n = len(body)
    version_at = body
    sid_len = g.u8(body + 34)
    cs_at = body + 35 + sid_len
    cs_len = g.be16(cs_at)
    comp_at = cs_at + 2 + cs_len
    comp_len = g.u8(comp_at)
    ext_at = comp_at + 1 + comp_len
    valid = (sid_len <= 32) & (cs_len % 2 == 0) & (ext_at <= end) & (body + 35 <= end)
    has_ext = valid & (ext_at + 2 <= end)
    ext_len = np.where(has_ext, g.be16(ext_at), 0)
    ext_end = np.where(has_ext, np.minimum(ext_at + 2 + ext_len, end), ext_at)
    ext = _walk_extensions(g, ext_at + 2, ext_end, has_ext)
    cs_len_in = np.where(valid, np.minimum(cs_len, np.maximum(end - cs_at - 2, 0)), 0)
    key = _hash_key(
        g, n, [(version_at, np.full(n, 2, dtype=np.int64)), (cs_at + 2, cs_len_in)], ext, CLIENT_CONTENT_EXTS
    )
    sni_start, sni_len, sni_odd = _sni(g, n, ext)
    zero = np.zeros(n, dtype=bool)
    return HelloBatch(valid & ~sni_odd, key, sni_start, sni_len, zero, zero.copy())


def server_hello_batch(buf: U8, body: I64, end: I64, compiled: bool | None = None) -> HelloBatch:
    """Walk ServerHello bodies; flags HelloRetryRequests and TLS 1.3 selections (in C as for the client)."""
    if _compiled(compiled) and len(body):
        return _hello_walk(buf, body, end, server=True)
    g = Gather(buf)
    n = len(body)
    version = g.be16(body)
    draft = (version >> 8) == 0x7F
    sid_len = np.where(draft, 0, g.u8(body + 34))
    cipher_at = np.where(draft, body + 34, body + 35 + sid_len)
    ext_at = np.where(draft, cipher_at + 2, cipher_at + 3)
    valid = (sid_len <= 32) & (ext_at <= end) & (body + 38 <= end) & ~draft
    has_ext = valid & (ext_at + 2 <= end)
    ext_len = np.where(has_ext, g.be16(ext_at), 0)
    ext_end = np.where(has_ext, np.minimum(ext_at + 2 + ext_len, end), ext_at)
    ext = _walk_extensions(g, ext_at + 2, ext_end, has_ext)
    two = np.full(n, 2, dtype=np.int64)
    key = _hash_key(g, n, [(body, two), (cipher_at, two)], ext, SERVER_CONTENT_EXTS)
    # HelloRetryRequest: the random is a fixed constant.
    random_at = body[:, None] + np.arange(2, 2 + len(HRR_RANDOM), dtype=np.int64)
    hrr = (g.u8(random_at) == np.frombuffer(HRR_RANDOM, dtype=np.uint8)).all(axis=1)
    owner, etype, dstart, dlen, _ = ext
    sv = (etype == 0x002B) & (dlen == 2)
    tls13 = np.zeros(n, dtype=bool)
    tls13[owner[sv]] = g.be16(dstart[sv]) == 0x0304
    tls13 |= version == 0x0304
    empty = np.zeros(n, dtype=np.int64)
    return HelloBatch(valid, key, empty - 1, empty.copy(), hrr, tls13)
