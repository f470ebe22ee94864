"""JA3, JA3N, JA3S and JA4 (with ja4_r, ja4_o, ja4_ro), computed once per unique hello.

Only the BSD-3-licensed methods live here: JA3/JA3S (salesforce) and JA4 for the TLS client
(FoxIO). JA4S, JA4X, JA4H and the other JA4+ methods are under the FoxIO License 1.1 and are
deliberately not implemented (see DESIGN.md, Licences).

Rules that real tools disagree on, and what this module does (the reference corpus follows the
written spec where the tools deviate):

* GREASE (RFC 8701) is removed from ciphers, extensions, groups and, for JA4, from
  signature_algorithms too.
* JA4 ALPN characters: empty or absent -> ``00``; first and last byte of the first protocol
  both ASCII alphanumeric -> those two characters; otherwise the first and last character of
  the protocol's hex string (``0xBAAD`` -> ``bd``).
* An empty cipher or extension list hashes to ``000000000000``; counts are capped at 99.

:func:`enrich` is the one stage every chunk of the connections table passes after any reader
(batch, stream and Spark alike): fingerprints, then canonical issuer keys.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tlsdetect import lists, schema
from tlsdetect.detect.ct import add_sct_columns
from tlsdetect.detect.issuers import add_issuer_keys
from tlsdetect.readers.base import DnOrder
from tlsdetect.wire.tls import EXT_ALPN, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS, ClientHello, ServerHello, is_grease

__all__ = [
    "CLIENT_FP_COLUMNS",
    "JA4",
    "ClientFingerprints",
    "add_fingerprints",
    "client_fingerprints",
    "enrich",
    "ja3_string",
    "ja3s_string",
    "ja4",
    "ja4_alpn_chars",
    "ja4_version",
    "md5_hex",
]

_EMPTY_HASH = "000000000000"

_TLS_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0x0200: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
#: DTLS versions count down: a larger number is an older protocol.
_DTLS_RANK = {0xFEFF: 1, 0xFEFD: 2, 0xFEFC: 3}


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def _sha12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _dec(values: Iterable[int]) -> str:
    return "-".join(str(v) for v in values)


def _no_grease(values: Iterable[int]) -> list[int]:
    return [v for v in values if not is_grease(v)]


def ja3_string(
    version: int,
    ciphers: Sequence[int],
    extensions: Sequence[int],
    groups: Sequence[int],
    point_formats: Sequence[int],
    *,
    sort_extensions: bool = False,
) -> str:
    """The JA3 text ``version,ciphers,extensions,groups,point_formats`` (decimal, GREASE removed).

    ``sort_extensions`` gives JA3N, which stays stable when a client (Chrome >= 110) shuffles
    its extension order on every connection.
    """
    exts = _no_grease(extensions)
    if sort_extensions:
        exts.sort()
    return ",".join(
        (
            str(version),
            _dec(_no_grease(ciphers)),
            _dec(exts),
            _dec(_no_grease(groups)),
            _dec(point_formats),
        )
    )


def ja3s_string(version: int, cipher: int, extensions: Sequence[int]) -> str:
    """The JA3S text ``version,cipher,extensions`` of a ServerHello."""
    return f"{version},{cipher},{_dec(_no_grease(extensions))}"


def ja4_version(legacy_version: int, supported_versions: Sequence[int], *, dtls: bool = False) -> str:
    """Two version characters: the highest supported_versions entry, else the legacy version."""
    offered = _no_grease(supported_versions)
    if offered:
        if dtls and all(v in _DTLS_RANK for v in offered):
            best = max(offered, key=_DTLS_RANK.__getitem__)
        else:
            best = max(offered)
    else:
        best = legacy_version
    return _TLS_VERSIONS.get(best, "00")


def _is_alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def ja4_alpn_chars(first_alpn: bytes | None) -> str:
    """JA4's two ALPN characters, by the written spec's hex rule for non-alphanumeric values."""
    if not first_alpn:
        return "00"
    if _is_alnum(first_alpn[0]) and _is_alnum(first_alpn[-1]):
        return chr(first_alpn[0]) + chr(first_alpn[-1])
    hexed = first_alpn.hex()
    return hexed[0] + hexed[-1]


class JA4(NamedTuple):
    ja4: str
    ja4_r: str
    ja4_o: str
    ja4_ro: str


def _hex4(values: Iterable[int]) -> list[str]:
    return [f"{v:04x}" for v in values]


def _c_part(exts: list[str], sigs: list[str]) -> tuple[str, str]:
    raw = ",".join(exts) + ("_" + ",".join(sigs) if sigs else "")
    return raw, (_sha12(raw) if exts else _EMPTY_HASH)


def ja4(
    transport: str,
    legacy_version: int,
    ciphers: Sequence[int],
    extensions: Sequence[int],
    first_alpn: bytes | None,
    sig_algs: Sequence[int],
    supported_versions: Sequence[int],
) -> JA4:
    """JA4 and its raw (``_r``), original-order (``_o``) and raw-original (``_ro``) forms.

    ``transport`` is the one-letter protocol: ``t`` (TLS over TCP), ``q`` (QUIC), ``d`` (DTLS).
    """
    cs = _no_grease(ciphers)
    ext = _no_grease(extensions)
    sigs = _hex4(_no_grease(sig_algs))
    has_versions = EXT_SUPPORTED_VERSIONS in ext
    version = ja4_version(
        legacy_version, supported_versions if has_versions else (), dtls=transport == "d"
    )
    sni = "d" if EXT_SERVER_NAME in ext else "i"
    alpn = ja4_alpn_chars(first_alpn if EXT_ALPN in ext else None)
    a = f"{transport}{version}{sni}{min(len(cs), 99):02d}{min(len(ext), 99):02d}{alpn}"

    cs_sorted = sorted(_hex4(cs))
    cs_orig = _hex4(cs)
    b_sorted = ",".join(cs_sorted)
    b_orig = ",".join(cs_orig)
    b_hash = _sha12(b_sorted) if cs else _EMPTY_HASH
    b_hash_o = _sha12(b_orig) if cs else _EMPTY_HASH

    ext_sorted = sorted(_hex4(e for e in ext if e not in (EXT_SERVER_NAME, EXT_ALPN)))
    c_raw, c_hash = _c_part(ext_sorted, sigs)
    c_raw_o, c_hash_o = _c_part(_hex4(ext), sigs)
    return JA4(
        ja4=f"{a}_{b_hash}_{c_hash}",
        ja4_r=f"{a}_{b_sorted}_{c_raw}",
        ja4_o=f"{a}_{b_hash_o}_{c_hash_o}",
        ja4_ro=f"{a}_{b_orig}_{c_raw_o}",
    )


class ClientFingerprints(NamedTuple):
    ja3: str
    ja3_full: str
    ja3n: str
    ja4: str
    ja4_r: str
    ja4_o: str
    ja4_ro: str


#: Connections-table columns of :class:`ClientFingerprints`, in order.
CLIENT_FP_COLUMNS: tuple[str, ...] = ClientFingerprints._fields


def client_fingerprints(transport: str, hello: ClientHello) -> ClientFingerprints:
    """All client fingerprints of one hello: the scalar reference the vectorised path must equal."""
    full = ja3_string(
        hello.legacy_version, hello.ciphers, hello.extensions, hello.groups, hello.point_formats
    )
    ja3n = ja3_string(
        hello.legacy_version,
        hello.ciphers,
        hello.extensions,
        hello.groups,
        hello.point_formats,
        sort_extensions=True,
    )
    j4 = ja4(
        transport,
        hello.legacy_version,
        hello.ciphers,
        hello.extensions,
        hello.alpn[0] if hello.alpn else None,
        hello.sig_algs,
        hello.supported_versions,
    )
    return ClientFingerprints(md5_hex(full), full, md5_hex(ja3n), *j4)


def server_fingerprint(hello: ServerHello) -> tuple[str, str]:
    """(ja3s, ja3s_full) of a ServerHello."""
    full = ja3s_string(hello.legacy_version, hello.cipher, hello.extensions)
    return md5_hex(full), full


# ---------------------------------------------------------------------------------------------
# Table-level: compute once per unique hello, broadcast to every row that carries it.

#: The connections-table columns a client fingerprint is a pure function of.
CLIENT_INPUT_COLUMNS = (
    "transport",
    "ch_version",
    "ch_ciphers",
    "ch_extensions",
    "ch_groups",
    "ch_point_formats",
    "ch_sig_algs",
    "ch_supported_versions",
    "ch_alpn",
)
SERVER_INPUT_COLUMNS = ("sh_version", "sh_cipher", "sh_extensions")

_TRANSPORT_LETTER = {"tcp": "t", "quic": "q", "dtls": "d"}


def _as_tuple(value: object) -> tuple[object, ...]:
    """Lists arrive as tuples from readers and as numpy arrays after a Parquet round trip."""
    if isinstance(value, tuple):
        return value
    if _missing(value) or not isinstance(value, Iterable):
        return ()
    return tuple(value)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _client_row(key: tuple[object, ...]) -> ClientFingerprints | None:
    transport, version, ciphers, exts, groups, pfs, sigs, svs, alpn = key
    if _missing(version):  # no ClientHello in this row
        return None
    alpn_list = _as_tuple(alpn)
    hello = ClientHello(
        legacy_version=int(version),  # type: ignore[call-overload]
        ciphers=_as_tuple(ciphers),  # type: ignore[arg-type]
        extensions=_as_tuple(exts),  # type: ignore[arg-type]
        groups=_as_tuple(groups),  # type: ignore[arg-type]
        point_formats=_as_tuple(pfs),  # type: ignore[arg-type]
        sig_algs=_as_tuple(sigs),  # type: ignore[arg-type]
        supported_versions=_as_tuple(svs),  # type: ignore[arg-type]
        alpn=tuple(bytes.fromhex(str(a)) for a in alpn_list),
    )
    return client_fingerprints(_TRANSPORT_LETTER.get(str(transport), "t"), hello)


def _hashable_column(series: pd.Series) -> pd.Series:
    """List columns come back from Parquet and Spark as numpy arrays, which cannot be hashed: as shared
    tuples (one per distinct list, :func:`tlsdetect.lists.shared`); other columns as they are."""
    first = series.dropna().head(1)
    if len(first) and isinstance(first.iloc[0], (list, np.ndarray)):
        item = pa.string() if series.name == "ch_alpn" else None
        return pd.Series(lists.shared(series, item=item), index=series.index, dtype=object, name=series.name)
    return series


def _factorize_rows(df: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, list[tuple[object, ...]]]:
    """Codes of the distinct combinations of ``columns`` and one key tuple per combination.

    Each column is factorised on its own (a C hash loop), then the integer codes are combined
    with ``np.unique``: no Python runs per row.
    """
    cols = [_hashable_column(df[c]) for c in columns]
    per_column = [pd.factorize(c, use_na_sentinel=True)[0] for c in cols]
    widths = [int(c.max(initial=-1)) + 2 for c in per_column]  # codes -1 .. max, shifted to 0 ..
    if math.prod(widths) < 1 << 62:
        # one int64 per row, column 0 most significant: the same order as np.unique(axis=0) of the
        # stacked codes, without its (rows x columns) copy and row-wise sort (~0.2 GB per 1M rows)
        combined = np.zeros(len(df), dtype=np.int64)
        for c, w in zip(per_column, widths, strict=True):
            combined *= w
            combined += c
            combined += 1
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(np.column_stack(per_column), axis=0, return_index=True, return_inverse=True)
    keys = [tuple(c.iloc[i] for c in cols) for i in first.tolist()]
    return inverse.reshape(-1), keys


def add_fingerprints(df: pd.DataFrame) -> pd.DataFrame:
    """Add ja3/ja3_full/ja3n/ja4/ja4_r/ja4_o/ja4_ro and ja3s/ja3s_full from the hello columns.

    Fingerprints are computed once per distinct hello and broadcast, so a capture of 100k
    connections from a dozen stacks costs a dozen hash computations. Rows without the hello
    lists keep whatever fingerprint they already carry (a value a Zeek or Envoy log reported),
    else get missing values; ``fingerprint_origin`` says which is which. Returns a new frame;
    the input is not changed.
    """
    out = df.copy(deep=False)  # new columns replace, never write into, the input's arrays
    client_cols = list(CLIENT_FP_COLUMNS)
    if len(df) == 0:
        for col in [*client_cols, "ja3s", "ja3s_full"]:
            out[col] = pd.Series(dtype="string")
        return out
    codes, uniques = _factorize_rows(df, CLIENT_INPUT_COLUMNS)
    per_unique = [_client_row(k) for k in uniques]
    computed = np.array([fp is not None for fp in per_unique], dtype=bool)[codes]
    for i, col in enumerate(client_cols):
        values = [fp[i] if fp is not None else None for fp in per_unique]
        out[col] = _keep_carried(df, col, _per_row(col, values, codes), computed)
    if computed.all():  # every row had its hello (captures): a constant, one code per row
        out["fingerprint_origin"] = schema.category_from_codes(["computed"], np.zeros(len(df), dtype=np.int64))
    else:  # "computed" as one more category over the carried ones: codes, never a Python string per row
        origin = (schema.as_category(df["fingerprint_origin"]) if "fingerprint_origin" in df.columns
                  else pd.Series(schema.null_categories(len(df)), index=df.index))
        names = [*map(str, origin.cat.categories), "computed"]
        codes = np.where(computed, len(names) - 1, np.asarray(origin.cat.codes, dtype=np.int64))
        out["fingerprint_origin"] = schema.category_from_codes(names, codes)

    s_codes, s_uniques = _factorize_rows(df, SERVER_INPUT_COLUMNS)
    s_computed = np.array([not _missing(k[0]) for k in s_uniques], dtype=bool)[s_codes]
    s_values: list[tuple[str | None, str | None]] = []
    for version, cipher, exts in s_uniques:
        if _missing(version):
            s_values.append((None, None))
            continue
        full = ja3s_string(int(version), int(cipher), _as_tuple(exts))  # type: ignore[call-overload,arg-type]
        s_values.append((md5_hex(full), full))
    for i, col in enumerate(("ja3s", "ja3s_full")):
        out[col] = _keep_carried(df, col, _per_row(col, [v[i] for v in s_values], s_codes), s_computed)
    return out


def _per_row(col: str, values: list[str | None], codes: npt.NDArray[np.int64]) -> Any:
    """A fingerprint column from one value per distinct hello: a categorical for the long texts
    (:data:`schema.HELLO_TEXT_COLUMNS`), else text taken by Arrow; never a Python string per row."""
    if schema.COLUMNS.get(col) == "category":
        return schema.category_from_codes(values, codes)
    return schema.strings_from_codes(values, codes)


def _keep_carried(df: pd.DataFrame, col: str, computed: Any, mask: npt.NDArray[np.bool_]) -> Any:
    """Computed values where the row had hello lists, the row's own value elsewhere (in the column's dtype)."""
    if col not in df.columns or mask.all():
        return computed
    carried = df[col].astype(object).to_numpy()
    merged = np.where(mask, np.asarray(computed, dtype=object), carried)
    text = pd.Series(pd.array(merged, dtype="string"), index=df.index)
    return schema.as_category(text).array if schema.COLUMNS.get(col) == "category" else text.array


#: The columns :func:`add_fingerprints` writes.
FP_COLUMNS = (*CLIENT_FP_COLUMNS, "ja3s", "ja3s_full", "fingerprint_origin")


def enrich(df: pd.DataFrame, *, dn_order: DnOrder = "rfc2253") -> pd.DataFrame:
    """The enrichment every chunk gets after reading: fingerprints, then issuer keys.

    Fingerprints are computed (:func:`add_fingerprints`) for the rows that have hello lists
    and do not already carry fingerprints computed from them: a row whose
    ``fingerprint_origin`` is ``computed`` (the pcap fast lane fingerprints its rows once per
    distinct hello, see :mod:`tlsdetect.readers.pcap.fastlane`) is kept as it is, and so is a
    row without hello lists (a value a log reported). So enriching twice changes nothing.
    ``dn_order`` is how the source prints DNs (Suricata: ``x509``).
    """
    if len(df) and "ch_version" in df.columns:
        hellos = df["ch_version"].notna().to_numpy(dtype=bool)
        if "sh_version" in df.columns:
            hellos = hellos | df["sh_version"].notna().to_numpy(dtype=bool)
        if "fingerprint_origin" in df.columns:
            hellos &= (df["fingerprint_origin"] != "computed").fillna(True).to_numpy(dtype=bool)
        if hellos.all():
            df = add_fingerprints(df)
        elif hellos.any():
            df = _fingerprint_rows(df, hellos)
    return add_sct_columns(add_issuer_keys(df, order=dn_order))


def _fingerprint_rows(df: pd.DataFrame, rows: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """:func:`add_fingerprints` for the ``rows`` only; the other rows keep their values.

    The computed values are put in place by Arrow (``replace_with_mask``), not through Python
    objects: a pcap chunk is mostly fast-lane rows with a few slow-lane rows among them.
    """
    done = add_fingerprints(df[rows])
    out = df.copy(deep=False)
    mask = pa.array(rows)
    for col in FP_COLUMNS:
        have = df[col] if col in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
        kept = pa.array(schema.as_text(have), type=pa.string(), from_pandas=True)
        merged = pc.replace_with_mask(kept, mask, pa.array(schema.as_text(done[col]), type=pa.string(),
                                                           from_pandas=True))
        text = pd.Series(pd.array(merged, dtype="string"), index=df.index)
        out[col] = schema.as_category(text) if schema.COLUMNS.get(col) == "category" else text
    return out
