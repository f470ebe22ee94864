"""The signal table and the evidence of fired signals: weights, the noisy-OR score and the reasons.

Each signal is a boolean mask with a weight and the evidence an analyst needs (``code``,
``detail``, ``expected``, ``observed``: text or null, see :data:`tlsdetect.schema.REASON_FIELDS`).
:class:`Evidence` collects them and builds reasons only for rows where something fired.

A *supporting* signal (``Signal.supporting``: a client the population model never saw, a new source
network) is true of every new client or service, so it never flags a row by itself: its weight and its
reason count only on rows where a non-supporting signal of weight > 0 fired (or on the rows its caller
names ``alone``, where it is strong enough by itself). An *informational* signal (weight 0) only
says something the analyst must know (a resumed session shows no certificate) and never changes a score.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.columns import Codes

__all__ = ["SIGNALS", "Evidence", "Signal", "evidence_text", "text_of", "top_list"]


@dataclass(frozen=True)
class Signal:
    """One kind of evidence: its code, weight (0-100) and what it means to an analyst."""

    code: str
    weight: float
    meaning: str
    supporting: bool = False  # counts only beside other evidence (see the module docstring)


SIGNALS: dict[str, Signal] = {s.code: s for s in (
    Signal("interception_ca", 95, "the certificate was issued by a known TLS-interception CA"),
    Signal("pin_violation", 90, "a pinned name answered with a chain none of its pins is in: a pinning client "
           "would reject it"),
    Signal("issuer_policy_violation", 75, "a name's certificate came from an issuer its issuer policy does not "
           "allow"),
    Signal("mesh_ca_lookalike", 90, "the issuer has the mesh CA's name but another key"),
    Signal("issuer_key_mismatch", 90, "a workload's certificate names its usual issuer but was signed by another key"),
    Signal("client_cert_changed", 60, "a known workload identity presented a certificate it never had"),
    Signal("identity_new_network", 15, "a known workload identity connected from a network it never used",
           supporting=True),
    Signal("known_interception_fingerprint", 85, "the ClientHello is a known interception product's"),
    Signal("public_name_no_sct", 45, "a leaf for a public name from a non-public CA carries no CT timestamps"),
    Signal("public_ca_in_mesh", 75, "a public CA issued a certificate where only the mesh CA belongs"),
    Signal("new_fingerprint_for_client", 60, "this client never sent this ClientHello in the baseline"),
    Signal("ua_fingerprint_mismatch", 50, "the ClientHello is not what the claimed User-Agent sends"),
    Signal("issuer_changed_for_sni", 50, "this server name presented a certificate from another issuer before"),
    Signal("partial_interception_fingerprint", 45, "the hello's cipher list and shape match an interception product"),
    Signal("resembles_interception_product", 45, "the hello's offered values are near an interception product's"),
    Signal("unknown_issuer_in_mesh", 45, "a private CA other than the mesh CA issued a mesh certificate"),
    Signal("tls_downgrade", 40, "the client offered a lower TLS version than it always did"),
    Signal("browser_without_grease", 40, "a Chromium User-Agent sent a hello without GREASE values"),
    Signal("weak_ciphers", 40, "the hello offers ciphers its population never offered"),
    Signal("fingerprint_convergence", 40, "several clients switched to the same new fingerprint at once"),
    Signal("proxied_for", 75, "a host the baseline never saw re-originates known clients' connections (a proxy)"),
    Signal("server_convergence", 60, "many clients of one server met the same new server answer at once (a middlebox)"),
    Signal("server_flight_changed", 50, "the server's first flight has a size it never sent this client hello family"),
    Signal("server_fingerprint_changed", 50, "the server answered this client hello family with a JA3S never seen"),
    Signal("server_version_changed", 30, "the server negotiated a version it never chose for this hello family"),
    Signal("server_cipher_changed", 30, "the server chose a cipher it never chose for this hello family"),
    Signal("resumed_intercepted_session", 70, "a resumed session of a full handshake flagged on its certificate "
           "or server"),
    Signal("model_outlier", 30, "the population model finds this ClientHello unlike any it learned",
           supporting=True),
    Signal("incomplete_handshake", 30, "the reader could not see the whole handshake: no fingerprint to check"),
    Signal("quic_blocked", 35, "this client used QUIC to this server before and now reaches it only over TCP"),
    Signal("quic_share_dropped", 40, "this network's share of QUIC to QUIC-capable servers fell far below its "
           "baseline's: UDP/443 blocked for many clients at once"),
    Signal("quic_params_changed", 60, "this client never sent these QUIC transport parameters in the baseline"),
    Signal("quic_params_ua_mismatch", 50, "the QUIC transport parameters are not what the claimed User-Agent sends"),
    Signal("hello_fragmented", 50, "the ClientHello came in many tiny TLS records, a way past inspection"),
    Signal("resumed_no_certificate", 0, "a resumed session: no certificate to check (informational)"),
)}


class Evidence:
    """Collects fired signals: masks, weights and per-row evidence strings for flagged rows.

    Evidence may be given as a callable of the fired rows' positions, so its strings are built
    for those rows only, never for the whole table. ``survival`` holds the non-supporting signals'
    product of (1 - weight); ``primary`` the rows where one of them (weight > 0) fired.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[pd.DataFrame] = []
        self.survival = np.ones(n, dtype=np.float64)
        self.primary = np.zeros(n, dtype=bool)
        self.supporting: list[tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]] = []  # (fired alone, weight)

    def add(self, code: str, mask: npt.NDArray[np.bool_], detail: Any, expected: Any = None, observed: Any = None,
            weight: npt.NDArray[np.float64] | float | None = None,
            alone: npt.NDArray[np.bool_] | None = None) -> None:
        """Add one signal's rows. ``alone`` (supporting signals only): the rows where it counts by itself."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        w = np.full(self.n, SIGNALS[code].weight) if weight is None else np.broadcast_to(weight, (self.n,))
        factor = 1.0 - np.clip(w, 0, 100) / 100.0
        if SIGNALS[code].supporting:
            by_itself = mask & (np.asarray(alone, dtype=bool) if alone is not None else False)
            self.supporting.append((by_itself, np.where(mask, factor, 1.0)))
            self.primary |= by_itself & (w > 0)
        else:
            self.survival[mask] *= factor[mask]
            self.primary |= mask & (w > 0)
        idx = np.flatnonzero(mask)

        def pick(v: Any) -> Any:
            if isinstance(v, Codes):
                return v.at_rows(idx)
            if callable(v):
                return np.asarray(v(idx), dtype=object)
            if isinstance(v, pd.Series):
                return v.iloc[idx].to_numpy(dtype=object)
            if isinstance(v, np.ndarray):
                return v[idx]
            return [v] * len(idx)

        def held(v: Any) -> pd.Series:
            # object, as picked: pandas 3 would copy text into an Arrow column, and reasons() make a new Python
            # string per row of it again (825k strings, 82 MiB, for the 260k reasons of a 1M-row score)
            return pd.Series(pick(v), dtype=object)

        self.parts.append(pd.DataFrame({
            "row": idx, "code": pd.Series(np.full(len(idx), code, dtype=object), dtype=object), "weight": w[idx],
            "detail": held(detail), "expected": held(expected),
            "observed": held(observed), "supporting": SIGNALS[code].supporting,
        }))

    def scores(self) -> npt.NDArray[np.float64]:
        """The noisy-OR of the weights that count: supporting signals' only on :attr:`primary` rows."""
        survival = self.survival.copy()
        for _, factor in self.supporting:
            survival[self.primary] *= factor[self.primary]
        return np.round(100.0 * (1.0 - survival), 1)

    def fired(self) -> pd.DataFrame:
        """Every reason that counts: ``row``, ``code``, ``weight``, the evidence fields (supporting signals only
        on :attr:`primary` rows), in no particular order."""
        if not self.parts:
            return pd.DataFrame({"row": np.array([], dtype=np.int64), "code": [], "weight": []})
        allr = pd.concat(self.parts, ignore_index=True)
        keep = ~allr["supporting"].to_numpy(dtype=bool) | self.primary[allr["row"].to_numpy()]
        kept: pd.DataFrame = allr[keep].reset_index(drop=True)
        return kept

    def reasons(self) -> npt.NDArray[np.object_]:
        out = np.empty(self.n, dtype=object)
        out.fill(())  # rows without a reason share one immutable empty sequence; flagged rows get lists
        allr = self.fired()
        if len(allr) == 0:
            return out
        allr = allr.sort_values(["row", "weight"], ascending=[True, False], kind="stable")
        rows = allr["row"].to_numpy()
        cols = [evidence_text(allr[c].to_numpy(dtype=object)) for c in schema.REASON_FIELDS]
        f0, f1, f2, f3 = schema.REASON_FIELDS  # a dict display per reason: no zip/dict call each
        bounds = np.flatnonzero(np.diff(rows)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(rows)]])
        # the collector would walk the whole heap again and again while these 100k acyclic dicts and lists are
        # made: paused, the step takes 0.07 s instead of 0.19 s per million scored rows
        paused = gc.isenabled()
        gc.disable()
        try:
            recs = [{f0: a, f1: b, f2: c, f3: d} for a, b, c, d in zip(*cols, strict=True)]
            for r, s, e in zip(rows[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
                out[r] = recs[s:e]
        finally:
            if paused:
                gc.enable()
        return out


def text_of(v: Any) -> str | None:
    """One evidence value as text: missing -> None, whole numbers as ``"2"``, others as their shortest
    decimal (``"0.731"``), so a reason field never mixes types (Arrow, Spark and SIEM mappings need one)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, float | np.floating):
        f = float(v)
        return None if np.isnan(f) else str(int(f)) if f.is_integer() else repr(f)
    if isinstance(v, int | np.integer):
        return str(int(v))
    return str(v)


def evidence_text(values: npt.NDArray[np.object_]) -> list[str | None]:
    """:func:`text_of` of each value, rendered once per distinct value (2 and 2.0 are one value and one text);
    text (most details: one per row) is kept as it is, its missing values None."""
    if pd.api.types.infer_dtype(values, skipna=True) == "string":
        kept = np.asarray(values, dtype=object).copy()
        kept[pd.isna(kept)] = None
        as_text: list[str | None] = kept.tolist()
        return as_text
    try:
        codes, uniq = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # an unhashable value (a list): render each one
        return [text_of(v) for v in values.tolist()]
    texts = np.array([*(text_of(v) for v in uniq), None], dtype=object)
    out: list[str | None] = texts[codes].tolist()  # code -1 (missing) takes the trailing None
    return out


def top_list(frame: pd.DataFrame, key: str, value: str, count: str, k: int = 3) -> dict[str, str]:
    """Per ``key``: its ``k`` most common ``value``s as 'v (n)', for the 'expected' of a reason."""
    if len(frame) == 0:
        return {}
    top = frame.sort_values(count, ascending=False, kind="stable").groupby(key, observed=True).head(k)
    text = (top[value].astype(str) + " (" + top[count].astype(str) + ")").to_numpy(dtype=object)
    # joined by rank within each key (a few ranks), not by a Python call per key
    group, keys = pd.factorize(top[key].astype(str).to_numpy(dtype=object))
    rank = pd.Series(group).groupby(group).cumcount().to_numpy()
    joined = np.empty(len(keys), dtype=object)
    for r in range(int(rank.max(initial=-1)) + 1):
        at = rank == r
        joined[group[at]] = text[at] if r == 0 else joined[group[at]] + ", " + text[at]
    order = np.argsort(np.asarray(keys, dtype=object), kind="stable")
    return {str(keys[i]): str(joined[i]) for i in order.tolist()}
