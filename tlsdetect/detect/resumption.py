"""Resumed sessions: no certificate to check, and the verdict of the full handshake they resume.

A resumed TLS session (``resumed``, see :mod:`tlsdetect.schema`) carries no certificate, so an intercepted
client that resumes its session with the interceptor looks clean: 10 of 11 intercepted legs through
mitmproxy were such rows. Two things follow, both vectorised over the table:

* every resumed row without a certificate says so (``resumed_no_certificate``, weight 0: it never changes
  a score) and its ``issuer_class`` reads :data:`RESUMED_CLASS`, never a clean class;
* it is linked to the latest earlier full handshake of the same client to the same server (server name,
  address and port) within :data:`TICKET_LIFETIME` (``merge_asof`` by those keys). When that handshake was
  flagged on certificate or server-side evidence (:data:`SESSION_CODES`: what a resumption cannot show
  again), the resumed row inherits it as ``resumed_intercepted_session``, weighted as that evidence
  (at most the signal's weight), and its ``issuer_class`` is the earlier handshake's.

Linking is by keys and time, not by session id or ticket (the table does not carry them): a client that
holds sessions with two servers behind one name, address and port is linked to the latest. Only rows of one
scored table are linked: ``tlsdetect stream`` scores micro-batches of Envoy logs, which carry no
``resumed`` column, so nothing is linked there; a batch source that fills ``resumed`` and is scored in parts
links within each part only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import combination_codes, raw_column, texts_at
from tlsdetect.detect.evidence import SIGNALS, Evidence
from tlsdetect.detect.server_profiles import server_names

__all__ = ["RESUMED_CLASS", "SESSION_CODES", "TICKET_LIFETIME", "resumption_signals"]

#: ``issuer_class`` of a resumed row that shows no certificate and resumes no flagged handshake.
RESUMED_CLASS = "resumed-no-certificate"
#: The longest a session ticket may live (RFC 8446 4.6.1: seven days); a later row resumes nothing we saw.
TICKET_LIFETIME = pd.Timedelta(days=7)
#: Evidence about the certificate and the server's answer of a full handshake: what a resumption inherits.
SESSION_CODES = frozenset({
    "interception_ca", "mesh_ca_lookalike", "public_ca_in_mesh", "unknown_issuer_in_mesh", "issuer_changed_for_sni",
    "server_flight_changed", "server_fingerprint_changed", "server_version_changed", "server_cipher_changed",
    "server_convergence",
})
#: An earlier handshake counts as flagged when its certificate and server evidence alone score this much.
FLAGGED_AT = 30.0


def _flag(values: pd.Series) -> npt.NDArray[np.bool_]:
    return np.asarray(values.astype("boolean").fillna(False), dtype=bool)


def _session_evidence(ev: Evidence) -> tuple[npt.NDArray[np.float64], pd.DataFrame]:
    """Per row: the score of its certificate and server evidence alone; and those fired signals (row, code)."""
    fired = ev.fired()
    score = np.zeros(ev.n, dtype=np.float64)
    part = fired[fired["code"].isin(list(SESSION_CODES))]
    if len(part) == 0:
        return score, part
    rows = part["row"].to_numpy(dtype=np.int64)
    survive = pd.Series(1.0 - np.clip(part["weight"].to_numpy(dtype=np.float64), 0, 100) / 100.0).groupby(rows).prod()
    score[survive.index.to_numpy()] = np.round(100.0 * (1.0 - survive.to_numpy()), 1)
    return score, part


def _session_codes(part: pd.DataFrame, n: int, wanted: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """Per row, the codes of its session evidence joined by ``", "``, for the ``wanted`` rows only (the handshakes
    a resumption inherits from: joining text for every flagged row cost 0.16 s per million rows)."""
    codes = np.full(n, "", dtype=object)
    part = part[np.isin(part["row"].to_numpy(dtype=np.int64), wanted)]
    if len(part):
        joined = part.drop_duplicates(["row", "code"]).groupby("row")["code"].agg(", ".join)
        codes[joined.index.to_numpy()] = joined.to_numpy(dtype=object)
    return codes


def _link(df: pd.DataFrame, cid: pd.Series, resumed: npt.NDArray[np.bool_],
          full: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Per row: the position of the full handshake a resumed row resumes (-1: none, or not resumed)."""
    n = len(df)
    link = np.full(n, -1, dtype=np.int64)
    ts = pd.to_datetime(raw_column(df, "ts"), utc=True, errors="coerce")
    has_ts = ts.notna().to_numpy()
    if not (resumed & has_ts).any() or not (full & has_ts).any():
        return link
    client = pd.Categorical(cid)
    name = server_names(df)
    addr, addrs = pd.factorize(raw_column(df, "server_ip"), use_na_sentinel=True)
    given = raw_column(df, "server_port").astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    port: npt.NDArray[np.int64] = np.where((given >= 0) & (given <= 65535), given, -1).astype(np.int64)
    # one int64 key per (client, server name, address, port), hashed once (a 4-column groupby cost 0.13 s / 1M rows)
    group, _ = combination_codes(
        [np.asarray(client.codes, dtype=np.int64), np.asarray(name.codes, dtype=np.int64),
         np.asarray(addr, dtype=np.int64), port],
        [len(client.categories) + 1, len(name.texts) + 1, len(addrs) + 1, 65_537])
    frame = pd.DataFrame({"ts": ts, "g": group, "pos": np.arange(n, dtype=np.int64)})
    left = frame[resumed & has_ts].sort_values("ts", kind="stable")
    right = frame[full & has_ts].sort_values("ts", kind="stable").rename(columns={"pos": "full"})
    joined = pd.merge_asof(left, right, on="ts", by="g", direction="backward", tolerance=TICKET_LIFETIME,
                           allow_exact_matches=True)
    got = joined["full"].notna().to_numpy()
    link[joined["pos"].to_numpy()[got]] = joined["full"].to_numpy()[got].astype(np.int64)
    return link


def resumption_signals(df: pd.DataFrame, cid: pd.Series, issuer_class: pd.Categorical,
                       ev: Evidence) -> pd.Categorical:
    """Add the two resumption signals to ``ev`` (run after every certificate and server signal); returns
    ``issuer_class`` with resumed rows without a certificate set (see the module docstring)."""
    n = len(df)
    if n == 0 or "resumed" not in df.columns:
        return issuer_class
    resumed = _flag(raw_column(df, "resumed"))
    no_cert = (raw_column(df, "server_cert_sha256").isna() & raw_column(df, "server_issuer").isna()).to_numpy()
    blind = resumed & no_cert
    if not blind.any():
        return issuer_class
    full = ~resumed & raw_column(df, "resumed").notna().to_numpy(dtype=bool)
    link = _link(df, cid, blind, full)
    linked = link >= 0
    session_score, session_part = _session_evidence(ev)
    at = np.maximum(link, 0)
    inherit = linked & (session_score[at] >= FLAGGED_AT)
    session_codes = _session_codes(session_part, n, np.unique(link[inherit]))

    def earlier(i: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """The linked handshake of rows ``i``: 'connection C of TS (client -> server)', rendered once per
        distinct linked handshake (many resumptions share one)."""
        j, back = np.unique(link[i], return_inverse=True)
        text = ("connection " + texts_at(raw_column(df, "conn_id"), j) + " of " + texts_at(raw_column(df, "ts"), j)
                + " (" + texts_at(raw_column(df, "client_ip"), j) + ":" + texts_at(raw_column(df, "client_port"), j)
                + " -> " + texts_at(raw_column(df, "server_ip"), j) + ":" + texts_at(raw_column(df, "server_port"), j)
                + ")").to_numpy(dtype=object)
        out: npt.NDArray[np.object_] = text[back.reshape(-1)]
        return out

    ev.add("resumed_no_certificate", blind & ~inherit,
           lambda i: np.where(linked[i], "resumed: no certificate to check; it resumes connection "
                              + texts_at(raw_column(df, "conn_id"), link[i])
                              + ", which no certificate or server evidence flagged",
                              "resumed: no certificate to check; the full handshake it resumes is not in this input"),
           expected="a certificate", observed="no certificate (resumed session)")
    weight = np.minimum(session_score[at], SIGNALS["resumed_intercepted_session"].weight)
    ev.add("resumed_intercepted_session", inherit,
           lambda i: ("resumed: no certificate to check; it resumes " + earlier(i) + ", flagged by "
                      + texts_at(session_codes, link[i])),
           expected="a session whose full handshake was not flagged",
           observed=lambda i: texts_at(session_codes, link[i]).to_numpy(dtype=object), weight=weight)

    # on the categorical's codes, not its texts: a million-row object array cost a quarter of this function
    cats = pd.Index(issuer_class.categories, dtype=object)
    if RESUMED_CLASS not in cats:
        cats = cats.append(pd.Index([RESUMED_CLASS], dtype=object))
    codes = np.asarray(issuer_class.codes, dtype=np.int64)
    before = codes[at]
    codes = np.where(blind, cats.get_loc(RESUMED_CLASS), codes)
    codes = np.where(inherit & (before >= 0), before, codes)
    return pd.Categorical.from_codes(codes, categories=cats)
