"""The ``connections`` table: the one frame every reader yields and every later stage extends.

One row per TLS handshake. A value a source cannot know is missing (``<NA>``/``None``), never a
placeholder: a TLS 1.3 capture cannot show the server certificate, Envoy can.

Column groups:

* identity and addressing: ``ts`` (UTC), ``source``, ``conn_id``, the 4-tuple, ``transport``
  (``tcp``, ``quic``, ``dtls``);
* what was said in clear: ``sni``, ``tls_version`` (negotiated when a ServerHello was seen, else
  the highest the client offered), ``alpn`` (client's first offered protocol);
* fingerprints: ``ja3``, ``ja3_full``, ``ja3n`` (JA3 with sorted extensions), ``ja3s``,
  ``ja3s_full``, ``ja4``, ``ja4_r``, ``ja4_o``, ``ja4_ro``; ``ja3_retry``/``ja4_retry`` hold the
  second ClientHello after a HelloRetryRequest (the first one is the connection's fingerprint);
  ``fingerprint_origin`` is ``computed`` when tlsdetect computed them from the hello lists, else
  the tool whose log carried them (``zeek``, ``suricata``, ``envoy``: Envoy's JA3 keeps GREASE in
  supported_groups and its JA4 keeps GREASE in signature_algorithms, so compare like with like);
* certificates: ``server_subject``, ``server_issuer``, ``server_cert_sha256`` (leaf) and
  ``server_chain`` (JSON list of ``{subject, issuer, sha256, ski, akid, spki}``, leaf first; ``ski``/
  ``akid`` are the Subject/Authority Key Identifiers as lowercase hex, null when absent, and
  sources without them, such as Zeek's x509 log, omit the two keys; ``spki`` is the base64 SHA-256
  of the DER SubjectPublicKeyInfo, the value pin sets carry, omitted by sources that never saw the
  certificate's bytes); ``server_spki_sha256`` is the leaf's ``spki``, a column so a leaf pin is
  checked without parsing JSON; the chain JSON stays the one place for the intermediates' and
  root's SPKIs (a per-position column would be as many columns as the longest chain); ``peer_*`` for the client
  certificate in mTLS; ``*_issuer_key`` is the issuer DN in the canonical form of
  :func:`tlsdetect.detect.issuers.dn_key`, equal whichever tool printed the DN; ``*_issuer_akid`` is the
  leaf's Authority Key Identifier (``key_identifier``, lowercase hex): which key signed the leaf,
  equal to the issuing CA's SKI. A look-alike CA (same issuer DN, another key) shows as an equal
  ``*_issuer_key`` with a different ``*_issuer_akid``. It is missing when the source never saw
  the certificate itself (TLS 1.3 captures, Zeek, Suricata, Envoy logs without
  ``%DOWNSTREAM_PEER_CERT%``/``%UPSTREAM_PEER_CERT%``) or the leaf has no AKI; ``peer_serial`` (the
  client certificate's serial number, lowercase hex of its bytes, as Envoy's ``%DOWNSTREAM_PEER_SERIAL%``
  prints it), ``peer_not_before``/``peer_not_after`` (its validity, UTC) bind a workload identity to its
  certificate and tell a renewal near expiry from a stranger's certificate
  (:mod:`tlsdetect.detect.identity_signals`); missing where the source does not log them;
* the parsed hello lists (``ch_*``, ``sh_*``) so fingerprints can be recomputed from the table
  and features derived. Lists hold ints in wire order, GREASE kept; ``ch_alpn`` holds each
  protocol as lowercase hex so non-ASCII values survive every output format;
* how the hello is held: a network shows a few thousand distinct hellos behind millions of
  connections, so what a hello determines is stored once per distinct hello. A list column is
  an ``object`` array of tuples in which equal lists are one shared tuple object (8 bytes per
  row; the readers broadcast them so, :mod:`tlsdetect.lists` restores the sharing where lists
  arrive one per row: :func:`read_parquet`, Spark's ``toPandas``). The fingerprint texts
  (:data:`HELLO_TEXT_COLUMNS`: the long ``ja3_full``, ``ja3s_full``, ``ja4_r``, ``ja4_ro`` and the
  32-36 character hashes ``ja3``, ``ja3n``, ``ja3s``, ``ja4``, ``ja4_o``) are categoricals with
  string categories, like the certificate columns below (one code per row: ~40 bytes of text per
  row and hash become 1-2 bytes); so are the retry fingerprints (``ja3_retry``, ``ja4_retry``, rare),
  with the low-cardinality columns below. Parquet keeps the lists as ``list<int32>`` (``list<string>``
  for ``ch_alpn``) and the categoricals as dictionaries, and :func:`read_parquet` reads them back in this
  form; JSON lines, CSV and the table write the text and the lists as before; Spark sees strings and arrays;
* the text columns of few distinct values (:data:`LOW_CARDINALITY_COLUMNS`: ``source``, ``transport``,
  ``tls_version``, ``alpn``, ``sh_alpn``, ``fingerprint_origin``, the retry fingerprints, ``incomplete``,
  ``truncated``, ``keylog``, ``quic_transport_params``) are string categoricals as well, read and written
  like the certificate columns below (Parquet dictionaries; text in JSON lines, CSV and the table). The
  addresses, ``sni`` and ``conn_id`` stay ``string``;
* the certificate columns (``server_*``/``peer_*`` above) are categoricals with string
  categories (:data:`CERT_COLUMNS`): a network sees a few hundred distinct certificates behind
  millions of connections, so each DN, digest and chain is stored once and the rows hold codes.
  A million Zeek rows carry ~0.8 GB of certificate text when spelled out per row; the codes are
  a few MB, and Parquet and Arrow keep them as dictionaries. Read them as text with
  :func:`as_text` (pandas' ``astype("string")`` also works, through a Python object per row);
  comparing two categoricals needs equal categories, and a new value needs its category added
  first, so derive text columns rather than writing into these; :func:`concat` keeps them
  categorical across tables;
* the server's side beyond its hello (who answers: a middlebox answers with its own stack and its own
  certificate chain, so these change even when the ClientHello is the client's own):
  ``server_flight`` is the sequence of lengths of the server's first flight after ServerHello and
  ``server_flight_bytes`` their sum. TLS 1.3: the length fields of the server's encrypted records
  (content type 23; EncryptedExtensions, Certificate, CertificateVerify, Finished) sent before the
  client's first encrypted record; ChangeCipherSpec is not counted. TLS <= 1.2: the handshake
  messages after ServerHello up to ServerHelloDone (Certificate, ServerKeyExchange,
  CertificateRequest, ServerHelloDone), each with its 4-byte header, so record packing does not
  change it. ``client_flight``/``client_flight_bytes`` are the same for the client's second flight
  (TLS 1.3: its encrypted records before the server's next record; TLS <= 1.2: Certificate,
  ClientKeyExchange, CertificateVerify up to ChangeCipherSpec). ``resumed`` is true when the
  session was resumed (TLS 1.3: the ServerHello carries pre_shared_key; TLS <= 1.2: the server
  echoed the client's non-empty session ID, ``sh_session_id_echoed``, or went straight to
  ChangeCipherSpec). Missing when the source did not see that far (a capture cut after the
  hellos) or does not log it;
* what the reader could not see: ``incomplete`` is null when the handshake was read as far as the
  row's columns go, else the reason code of where the reader gave up (the capture engine:
  ``depth_exceeded`` a direction passed the reassembly depth before its hello or chain was whole,
  ``hello_cut`` a hello began but never became whole (a gap, the capture's end, an idle flow),
  ``no_client_hello`` only the server's side was seen, ``malformed_hello``, ``message_limit``,
  ``pending_evicted`` finished early at the global bound on pending handshakes, oldest-idle first,
  ``overlap_conflict`` TCP segments of the handshake overlapped with different bytes, so the server may
  have read another hello than the one fingerprinted, the first copy's):
  a row with missing fingerprints is never just a quiet row. ``ch_records`` is the number of TLS
  records the first ClientHello came in (1 for nearly every stack; many tiny records are an
  evasion of record-at-a-time inspection); missing where the source does not say.
  ``truncated`` is null unless a flight after the hellos is missing because a record of it was cut:
  the direction's bytes end inside a record (its header claims more than was delivered: the
  capture's end, snaplen, an idle or evicted flow) or a hole follows the last whole record (bytes
  the sensor missed). It names where, server first, comma-separated: ``server_chain`` (TLS <= 1.2:
  the server's flight was cut before its Certificate was whole: the ``server_*`` certificate
  columns, ``server_flight*`` and, unless the session ID was echoed, ``resumed`` are missing),
  ``server_flight`` (the server's flight sizes are missing; TLS 1.3: so is ``client_flight``, whose
  end is the server's next record), ``client_chain`` (TLS <= 1.2 mTLS: the client's Certificate
  was cut: ``peer_*`` missing) and ``client_flight``. Those columns are null, never a partial value
  (a flight cut short would read as "changed" to the server-side signals). A flight already decided
  before the cut (application data cut at the capture's end) is not truncated. It is not an
  ``incomplete`` reason: the hellos, and so the fingerprints, were read whole, and a capture that
  ends mid-flight is common; the row stays a clean row with fewer columns known, and the anomaly
  ledger counts it (``record_truncated``). The reassembly depth is ``depth_exceeded``'s, not a cut.
  Only the native engine says it (tshark completes the records it prints; log sources do not say);
* Certificate Transparency: ``server_sct_count`` is how many signed certificate timestamps the leaf embeds
  (the SCT list extension, 1.3.6.1.4.1.11129.2.4.2; 0: none) and ``server_sct_logs`` their log IDs (base64,
  comma-separated, in the certificate's order) and ``server_not_before`` the leaf's validity start (CT has
  been required of public leaves issued since 2018-04-30); null where the leaf's bytes were never seen (Zeek,
  Suricata, Envoy logs without the PEM fields, TLS 1.3 captures without ``--keylog``): not seen is not "none".
  Filled after reading by :func:`tlsdetect.detect.ct.add_sct_columns`;
* TLS 1.3 chains from a key log (``--keylog``): ``keylog`` is null unless the read had a key log; then each
  row whose ServerHello chose TLS 1.3 says how its encrypted flight went: ``decrypted`` (the certificate
  columns above are filled from it), ``no_key`` (the key log has no secret for this ClientHello random),
  ``no_certificate`` (it opened and held no Certificate: a resumed session), ``decrypt_failed`` (the logged
  secret does not open it: a key log of another run), ``unsupported_cipher``, ``flight_cut`` (the capture
  ends or has a gap inside the flight), ``malformed_flight``. Not an ``incomplete`` reason: the hellos were
  read whole. The reader counts each (``keylog_<status>``);
* ``quic_transport_params`` (QUIC rows only): the client's QUIC transport parameters (ClientHello
  extension 0x39), in wire order, comma-separated, each id in lowercase hex, each GREASE id
  (``31 * N + 27``, random per connection) written ``grease``; a stack setting's value follows its id
  (``4=15728640``: windows, limits, timeouts, UDP payload size; ``version_information`` as
  ``11=00000001/6b3343cf``): the QUIC stack's own list, which an interception product that terminates
  QUIC replaces with its own (:mod:`tlsdetect.wire.quic_tp`). Missing on TCP and DTLS rows and where
  the source does not say;
* later stages' columns (``user_agent``, ``client_id``) exist from the start so all sources
  share one shape.

Size: one module because the columns' documentation above, their dtypes and conform/concat/validate must
agree column by column; most of its lines are that documentation, which readers of every source consult.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

__all__ = ["CATEGORY_COLUMNS", "CERT_COLUMNS", "COLUMNS", "HELLO_TEXT_COLUMNS", "LIST_COLUMNS",
           "LOW_CARDINALITY_COLUMNS", "OUTPUT_COLUMNS", "REASONS_ARROW", "REASON_FIELDS", "as_category", "as_text",
           "category_from_codes", "concat", "conform", "dtype_name", "empty", "missing", "null_categories",
           "null_strings", "read_parquet", "strings_from_codes", "validate"]

#: Column name -> pandas dtype. ``object`` columns hold tuples of ints (or of hex strings).
COLUMNS: Mapping[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "source": "category",
    "conn_id": "string",
    "client_ip": "string",
    "client_port": "Int32",
    "server_ip": "string",
    "server_port": "Int32",
    "transport": "category",
    "sni": "string",
    "tls_version": "category",
    "alpn": "category",
    "ja3": "category",
    "ja3_full": "category",
    "ja3n": "category",
    "ja3s": "category",
    "ja3s_full": "category",
    "ja4": "category",
    "ja4_r": "category",
    "ja4_o": "category",
    "ja4_ro": "category",
    "fingerprint_origin": "category",
    "ja3_retry": "category",
    "ja4_retry": "category",
    "hello_retry": "boolean",
    "server_subject": "category",
    "server_issuer": "category",
    "server_cert_sha256": "category",
    "server_chain": "category",
    "server_issuer_key": "category",
    "server_issuer_akid": "category",
    "server_spki_sha256": "category",
    "peer_subject": "category",
    "peer_issuer": "category",
    "peer_cert_sha256": "category",
    "peer_issuer_key": "category",
    "peer_issuer_akid": "category",
    "peer_spki_sha256": "category",
    "peer_serial": "category",
    "peer_not_before": "datetime64[ns, UTC]",
    "peer_not_after": "datetime64[ns, UTC]",
    "user_agent": "string",
    "client_id": "string",
    "ch_version": "Int32",
    "ch_ciphers": "object",
    "ch_extensions": "object",
    "ch_groups": "object",
    "ch_point_formats": "object",
    "ch_sig_algs": "object",
    "ch_supported_versions": "object",
    "ch_alpn": "object",
    "sh_version": "Int32",
    "sh_cipher": "Int32",
    "sh_extensions": "object",
    "sh_selected_version": "Int32",
    "sh_alpn": "category",
    "sh_session_id_echoed": "boolean",
    "resumed": "boolean",
    "server_flight": "object",
    "server_flight_bytes": "Int32",
    "client_flight": "object",
    "client_flight_bytes": "Int32",
    "incomplete": "category",
    "ch_records": "Int32",
    "truncated": "category",
    "keylog": "category",
    "server_sct_count": "Int32",
    "server_sct_logs": "category",
    "server_not_before": "datetime64[ns, UTC]",
    "quic_transport_params": "category",
}

LIST_COLUMNS = tuple(c for c, t in COLUMNS.items() if t == "object")

#: Columns held as categoricals with string categories (see the module docstring): the certificate
#: columns and the long fingerprint texts (:data:`HELLO_TEXT_COLUMNS`).
CATEGORY_COLUMNS = tuple(c for c, t in COLUMNS.items() if t == "category")

#: The fingerprint texts (spelled-out hellos and their hashes), held once per distinct hello.
HELLO_TEXT_COLUMNS = ("ja3", "ja3_full", "ja3n", "ja3s", "ja3s_full", "ja4", "ja4_r", "ja4_o", "ja4_ro")

#: Text columns of few distinct values (a source name, a transport, a version, an ALPN, a reason code, a QUIC
#: stack's parameters): categoricals too, one code per row instead of its text (~115 MiB per 1M rows).
LOW_CARDINALITY_COLUMNS = ("source", "transport", "tls_version", "alpn", "fingerprint_origin", "ja3_retry", "ja4_retry",
                           "sh_alpn", "incomplete", "truncated", "keylog", "quic_transport_params")

#: The certificate columns (``server_*``/``peer_*`` categoricals).
CERT_COLUMNS = tuple(c for c in CATEGORY_COLUMNS if c not in HELLO_TEXT_COLUMNS and c not in LOW_CARDINALITY_COLUMNS)

#: The fields of one entry of ``reasons``, the column :func:`tlsdetect.detect.scoring.score` adds: a list of
#: ``{code, detail, expected, observed}`` per row (empty on a row without a reason). Every field is
#: text or null, in every output (table, JSON lines, CSV, Parquet, ECS, CEF, the REST API, Spark):
#: ``code`` is a :data:`tlsdetect.detect.evidence.SIGNALS` key, ``detail`` the sentence for an analyst,
#: ``expected``/``observed`` what the baseline or knowledge predicts and what the row shows, numbers
#: written as decimal text (``"0.731"``, ``"2"``), null when a signal has nothing to compare.
#: One type per field lets Arrow, Spark and a SIEM's index mapping take every row.
REASON_FIELDS = ("code", "detail", "expected", "observed")

#: ``reasons`` in Arrow (Parquet): ``list<struct<code, detail, expected, observed: string>>``.
REASONS_ARROW = pa.list_(pa.struct([pa.field(f, pa.string(), nullable=True) for f in REASON_FIELDS]))

#: What ``tlsdetect fingerprint`` shows by default, in this order.
OUTPUT_COLUMNS = (
    "ts",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "transport",
    "sni",
    "tls_version",
    "alpn",
    "ja3",
    "ja3_full",
    "ja3n",
    "ja3s",
    "ja4",
    "ja4_r",
    "ja4_o",
    "ja4_ro",
    "server_subject",
    "server_issuer",
    "server_cert_sha256",
)


def empty() -> pd.DataFrame:
    """A zero-row connections table with every column and dtype."""
    index = pd.RangeIndex(0)
    return pd.DataFrame({c: missing(t, index) for c, t in COLUMNS.items()}, index=index)


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Add missing columns, cast known ones to their dtypes, keep schema order (extras last).

    When columns are missing or need a cast, the result is built in one step from the column
    arrays: inserting columns one at a time costs more than the casts on a chunk of a few
    thousand rows. A frame that only needs its order (or nothing) is copied and reordered.
    """
    have = dict(zip(df.columns, map(dtype_name, df.dtypes), strict=True)) if df.columns.is_unique else None
    if have is None or all(c in have and t in ("object", have[c]) for c, t in COLUMNS.items()):
        return _conform_by_column(df)  # nothing to add or cast (or duplicate column names)
    data: dict[str, object] = {}
    for col, dtype in COLUMNS.items():
        if col not in have:
            data[col] = missing(dtype, df.index).array
        elif dtype != "object" and have[col] != dtype:
            data[col] = _cast(df[col], dtype).array
        else:
            data[col] = df[col].array
    data.update({c: df[c].array for c in df.columns if c not in COLUMNS})
    return pd.DataFrame(data, index=df.index.copy())


def concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)`` for connections tables (chunks of one input, inputs of
    one run), with the certificate columns kept categorical over the union of the frames' categories.

    pandas spells out two categoricals with different categories as text: per row, the very cost
    the categories are there to avoid.
    """
    from pandas.api.types import union_categoricals

    frames = list(frames)
    if not frames:
        return empty()
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    cert = [c for c in CATEGORY_COLUMNS if all(c in f.columns for f in frames)]
    out = pd.concat([f.drop(columns=cert) for f in frames], ignore_index=True)
    cats = {c: union_categoricals([as_category(f[c]).array for f in frames]) for c in cert}
    out = out.assign(**{c: pd.Series(v, index=out.index, copy=False) for c, v in cats.items()})
    order = [*frames[0].columns, *(c for c in out.columns if c not in frames[0].columns)]
    return out[order]


def read_parquet(path: Any) -> pd.DataFrame:
    """A connections table from a Parquet file of the Parquet sink, read back equal and as compact as written.

    ``pd.read_parquet`` makes a numpy array per row of every list column (~100 bytes of object each)
    and object strings of the dictionaries; here the list columns come back as shared tuples
    (:func:`tlsdetect.lists.from_arrow`), the dictionary columns as categoricals of their dictionary
    and text as Arrow-backed ``string``. Columns outside the schema (``score``'s) are read as pandas does.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tlsdetect import lists

    source = pq.ParquetFile(path)
    pool = pa.default_memory_pool()
    data: dict[str, Any] = {}
    for name in source.schema_arrow.names:  # one column at a time: its Arrow form never all at once
        column = source.read(columns=[name]).column(0)
        kind = COLUMNS.get(name)
        if kind == "object" and (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            data[name] = lists.from_arrow(column)
        elif kind == "category" and (pa.types.is_dictionary(column.type) or pa.types.is_string(column.type)
                                     or pa.types.is_large_string(column.type)):
            if not pa.types.is_dictionary(column.type):  # a file written before the column was categorical
                column = pc.dictionary_encode(column)
            data[name] = _category_from_arrow(column.unify_dictionaries())
        elif kind == "string" and column.null_count == len(column):  # a column this source never fills
            data[name] = null_strings(len(column))  # one shared all-null array, not offsets per column
        elif kind == "string" and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            data[name] = pd.arrays.ArrowStringArray(pa.chunked_array(column.chunks, type=column.type).cast(
                pa.large_string()))
        else:  # Int32 and boolean straight to pandas' masked arrays: no float64/object step and cast after
            data[name] = column.to_pandas(types_mapper=_NULLABLE_ARROW.get)
        del column
        pool.release_unused()
    # copy=False: the arrays are this call's own; a dict is otherwise copied into 2-D blocks (measured
    # +0.2 GB RSS per 1M rows)
    return conform(pd.DataFrame(data, index=pd.RangeIndex(source.metadata.num_rows), copy=False))


#: Arrow types :func:`read_parquet` turns into pandas' masked arrays directly.
_NULLABLE_ARROW = {pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


def _category_from_arrow(column: Any) -> pd.Categorical:
    """A dictionary column (one dictionary over its chunks) as a string categorical of that dictionary."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(arr, pa.ChunkedArray):  # no chunks at all
        return null_categories(0)
    codes = np.asarray(arr.indices.cast(pa.int64()).fill_null(-1), dtype=np.int64)
    return category_from_codes(arr.dictionary.to_pylist(), codes)


def _conform_by_column(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`conform` one column at a time, then a reorder."""
    out = df.copy(deep=False)  # copy-on-write: a cast or new column replaces the input's, never writes into it
    for col, dtype in COLUMNS.items():
        if col not in out.columns:
            out[col] = missing(dtype, out.index)
        elif dtype != "object" and dtype_name(out[col].dtype) != dtype:
            out[col] = _cast(out[col], dtype)
    extras = [c for c in out.columns if c not in COLUMNS]
    return out[[*COLUMNS, *extras]]


def dtype_name(dtype: Any) -> str:
    """``str(dtype)``, except that a categorical of other than strings is not a schema "category"."""
    if isinstance(dtype, pd.CategoricalDtype) and str(dtype.categories.dtype) != "string":
        return f"category[{dtype.categories.dtype}]"
    return str(dtype)


def _cast(s: pd.Series, dtype: str) -> pd.Series:
    if dtype == "category":
        return as_category(s)
    cast: pd.Series = s.astype(dtype)  # type: ignore[call-overload]
    return cast


def as_category(s: pd.Series) -> pd.Series:
    """A text column as a certificate column: a categorical with string categories.

    Through ``string`` first, so the categories have one dtype whatever the input held (object,
    ``str``, a categorical of objects): categoricals concatenate as categoricals only when their
    categories match in dtype too.
    """
    if isinstance(s.dtype, pd.CategoricalDtype) and str(s.cat.categories.dtype) == "string":
        return s
    return s.astype("string").astype("category")


def missing(dtype: str, index: pd.Index) -> pd.Series:
    """An all-missing column of a schema dtype, built from arrays, never from a Python list of
    ``None`` (a new array each time: frames may not share one)."""
    n = len(index)
    values: Any
    if dtype == "string":
        values = null_strings(n)
    elif dtype == "Int32":
        values = pd.arrays.IntegerArray(np.zeros(n, dtype=np.int32), np.ones(n, dtype=bool))
    elif dtype == "boolean":
        values = pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    elif dtype == "object":
        values = np.empty(n, dtype=object)  # numpy fills object arrays with None (faster than np.full)
    elif dtype == "category":
        values = null_categories(n)
    elif dtype == "datetime64[ns, UTC]":
        values = pd.DatetimeIndex(np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")).tz_localize("UTC")
    else:
        values = pd.array([None] * n, dtype=dtype)  # type: ignore[call-overload]
    return pd.Series(values, index=index, dtype=dtype, copy=False)


def category_from_codes(values: Sequence[str | None], codes: npt.NDArray[np.integer[Any]]) -> pd.Categorical:
    """A certificate column from per-code values and codes (-1 = missing), without a Python step per row.

    ``values`` may repeat or hold ``None`` (two DNs with one canonical key; an unparseable DN):
    they are deduplicated here, so the categories are unique and the codes remapped.
    """
    if all(v is None for v in values):  # nothing known (no client certificates): no per-row work
        return null_categories(len(codes))
    uniq: dict[str, int] = {}
    remap = np.full(len(values) + 1, -1, dtype=np.int64)  # the last slot: code -1 stays missing
    for j, v in enumerate(values):
        if v is not None:
            remap[j] = uniq.setdefault(v, len(uniq))
    width: type[np.signedinteger[Any]] = np.int8 if len(uniq) < 127 else np.int16 if len(uniq) < 32_767 else np.int32
    # values already distinct and none missing (chains, digests): the codes as they are
    small: npt.NDArray[np.signedinteger[Any]] = (codes if len(uniq) == len(values) else remap[codes]).astype(width)
    return pd.Categorical.from_codes(small, categories=pd.Index(list(uniq), dtype="string"), validate=False)


#: Above this many bytes of output a string column is gathered with ``bytes.join`` (see :func:`strings_from_codes`).
_JOIN_BYTES = 1 << 25


def strings_from_codes(values: Sequence[str | None],
                       codes: npt.NDArray[np.integer[Any]]) -> pd.api.extensions.ExtensionArray:
    """A string column from per-unique values and factorised codes (-1 = missing), without Python per row.

    Small outputs: Arrow's dictionary decode. Large ones (the chain JSON is ~0.5 GB per million rows):
    ``bytes.join`` over the per-row picks of the distinct values, then offsets and validity from numpy,
    wrapped as Arrow buffers without a copy. Same values; about half the CPU, because Arrow's pool
    allocation page-faults its fresh output several times over (measured 0.3 vs 0.8 s for 560 MB).
    """
    dictionary = pa.array(list(values), type=pa.large_string())
    n, k = len(codes), len(dictionary)
    if dictionary.null_count == k:  # e.g. no client certificates at all
        return null_strings(n)
    if n and codes[0] >= 0 and values[int(codes[0])] is not None and (codes == codes[0]).all():
        # a constant (source, fingerprint origin, a capture of one transport)
        one = str(values[int(codes[0])]).encode("utf-8")
        const = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(np.arange(n + 1) * len(one)),
                                                              pa.py_buffer(one * n)])
        return pd.arrays.ArrowStringArray(pa.chunked_array([const]))
    picks = np.where(codes < 0, k, codes)  # k: the missing slot
    _, offs_buf, data_buf = dictionary.buffers()
    offs = np.frombuffer(offs_buf, dtype=np.int64, count=k + 1) if k else np.zeros(1, dtype=np.int64)
    lengths = np.append(np.diff(offs), 0)  # a null dictionary entry has length 0
    if k == 0 or int(lengths[picks].sum()) < _JOIN_BYTES:
        idx = pa.array(codes.astype(np.int32), mask=codes < 0)
        decoded = pa.DictionaryArray.from_arrays(idx, dictionary).dictionary_decode()  # ~5x faster than take
        return pd.arrays.ArrowStringArray(pa.chunked_array([decoded]))
    raw = data_buf.to_pybytes() if data_buf is not None else b""
    pieces = np.empty(k + 1, dtype=object)
    pieces[:] = [raw[offs[j] : offs[j + 1]] for j in range(k)] + [b""]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths[picks], out=offsets[1:])
    data = b"".join(pieces[picks].tolist())
    valid = np.append(np.asarray(dictionary.is_valid()), False)[picks]
    nulls = n - int(np.count_nonzero(valid))
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    arr = pa.Array.from_buffers(pa.large_string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
                                null_count=nulls)
    return pd.arrays.ArrowStringArray(pa.chunked_array([arr]))


def as_text(s: pd.Series) -> pd.Series:
    """A column as Arrow-backed ``string``: a certificate column spelled out per row, in C.

    pandas' own ``Categorical.astype("string")`` goes through a Python object per row (~0.5 s per
    million rows of issuer DNs); this takes the codes into the categories as Arrow does.
    """
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s.astype("string")
    codes = np.asarray(s.cat.codes, dtype=np.int64)
    text = strings_from_codes([str(c) for c in s.cat.categories], codes)
    return pd.Series(text, index=s.index, name=s.name, copy=False)


def null_categories(n: int) -> pd.Categorical:
    """An all-missing categorical column with (no) string categories, the shape of a certificate column."""
    return pd.Categorical.from_codes(np.full(n, -1, dtype=np.int8), categories=pd.Index([], dtype="string"))


def null_strings(n: int) -> pd.api.extensions.ExtensionArray:
    """A new all-missing string array over one shared (immutable) Arrow array of that length."""
    return pd.arrays.ArrowStringArray(_arrow_nulls(n))


@functools.lru_cache(maxsize=2)
def _arrow_nulls(n: int) -> Any:
    return pa.chunked_array([pa.nulls(n, pa.large_string())])


def validate(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming every column that is missing or of the wrong dtype."""
    problems = []
    for col, dtype in COLUMNS.items():
        if col not in df.columns:
            problems.append(f"missing column {col!r}")
        elif dtype_name(df[col].dtype) != dtype:
            problems.append(f"column {col!r} is {dtype_name(df[col].dtype)}, expected {dtype}")
    if problems:
        raise ValueError("not a connections table: " + "; ".join(problems))
