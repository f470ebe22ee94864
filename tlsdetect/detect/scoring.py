"""Signals -> score, verdict and reasons, over a whole connections table at once.

Each signal is a boolean mask with a weight and the evidence an analyst needs (``code``,
``detail``, ``expected``, ``observed``: text or null, see :data:`tlsdetect.schema.REASON_FIELDS`).
Masks are computed over distinct values (issuers, fingerprints, hellos, client/fingerprint pairs)
and broadcast by integer codes, so scoring costs a few hash lookups per row and no Python per row;
reasons are assembled only for flagged rows.

The score is the noisy-OR of the weights that fired (two independent 50s make 75, not 100):
strong evidence (a known interception CA or product, a public CA or a look-alike of the mesh CA
where only the mesh CA belongs) reaches ``intercepted`` on its own; anomalies (a fingerprint new
for a stable client, a User-Agent that does not match its hello, structural tells, the
population model) make a row ``suspicious`` and ``intercepted`` when they add up.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.baseline import ROLES, Baseline, client_ids
from tlsdetect.detect.features import has_grease, hello_codes, weak_cipher_count
from tlsdetect.detect.issuers import dn_key
from tlsdetect.detect.knowledge import Knowledge, classify_issuers, load_knowledge, match_fingerprints
from tlsdetect.detect.useragent import family_of_stack, ua_family

__all__ = [
    "SCORE_COLUMNS", "SCORE_OUTPUT_COLUMNS", "SCORE_TABLE_COLUMNS", "SIGNALS", "VERDICTS", "Signal", "score",
    "summarize", "verdict_of",
]

VERDICTS = ("ok", "suspicious", "intercepted")
INTERCEPTED_AT = 70.0
SUSPICIOUS_AT = 30.0
SCORE_COLUMNS = ("client_id", "issuer_class", "known_product", "score", "verdict", "reasons", "compared")
#: A scored row as ``tlsdetect score -f jsonl|csv|parquet`` and ``POST /v1/score`` write it.
SCORE_OUTPUT_COLUMNS = (
    "ts", "source", "conn_id", "client_ip", "client_port", "server_ip", "server_port", "transport", "sni",
    "tls_version", "ja3", "ja3n", "ja4", "server_issuer", "peer_subject", "peer_issuer", "user_agent",
    "client_id", "issuer_class", "known_product", "score", "verdict", "reasons", "compared",
)
#: The short row of ``tlsdetect score -f table``.
SCORE_TABLE_COLUMNS = ("ts", "client_id", "server_ip", "server_port", "sni", "ja4", "score", "verdict", "reason_codes")
BROWSERS = frozenset({"chromium", "firefox", "safari"})


@dataclass(frozen=True)
class Signal:
    """One kind of evidence: its code, weight (0-100) and what it means to an analyst."""

    code: str
    weight: float
    meaning: str


SIGNALS: dict[str, Signal] = {s.code: s for s in (
    Signal("interception_ca", 95, "the certificate was issued by a known TLS-interception CA"),
    Signal("mesh_ca_lookalike", 90, "the issuer has the mesh CA's name but another key"),
    Signal("known_interception_fingerprint", 85, "the ClientHello is a known interception product's"),
    Signal("public_ca_in_mesh", 75, "a public CA issued a certificate where only the mesh CA belongs"),
    Signal("new_fingerprint_for_client", 60, "this client never sent this ClientHello in the baseline"),
    Signal("ua_fingerprint_mismatch", 50, "the ClientHello is not what the claimed User-Agent sends"),
    Signal("issuer_changed_for_sni", 50, "this server name presented a certificate from another issuer before"),
    Signal("partial_interception_fingerprint", 45, "the hello's cipher list and shape match an interception product"),
    Signal("unknown_issuer_in_mesh", 45, "a private CA other than the mesh CA issued a mesh certificate"),
    Signal("tls_downgrade", 40, "the client offered a lower TLS version than it always did"),
    Signal("browser_without_grease", 40, "a Chromium User-Agent sent a hello without GREASE values"),
    Signal("weak_ciphers", 40, "the hello offers ciphers its population never offered"),
    Signal("fingerprint_convergence", 40, "several clients switched to the same new fingerprint at once"),
    Signal("model_outlier", 30, "the population model finds this ClientHello unlike any it learned"),
)}


def verdict_of(scores: npt.NDArray[np.float64]) -> pd.Categorical:
    """``intercepted`` from 70, ``suspicious`` from 30, else ``ok`` (a categorical of :data:`VERDICTS`)."""
    codes = np.where(scores >= INTERCEPTED_AT, 2, np.where(scores >= SUSPICIOUS_AT, 1, 0)).astype(np.int64)
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(VERDICTS), dtype=object))


def _str(df: pd.DataFrame, col: str) -> pd.Series:
    if col in df.columns:
        return schema.as_text(df[col]).reset_index(drop=True)
    return pd.Series(None, index=range(len(df)), dtype=object)


def _raw(df: pd.DataFrame, col: str) -> pd.Series:
    """A column as stored (certificate columns stay categorical: codes, never text per row), by position."""
    if col in df.columns:
        return df[col].reset_index(drop=True)
    return pd.Series(None, index=range(len(df)), dtype=object)


def _lookup(values: pd.Series, index: pd.Index) -> npt.NDArray[np.int64]:
    """Position of each value in ``index`` (-1 if absent or missing), hashing each distinct value once."""
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    if len(uniq) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    pos = np.asarray(index.get_indexer(uniq), dtype=np.int64)
    return np.where(codes < 0, -1, pos[np.maximum(codes, 0)])


def _pair_in(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], pairs_a: npt.NDArray[np.int64],
             pairs_b: npt.NDArray[np.int64], nb: int) -> npt.NDArray[np.bool_]:
    """Whether each (a, b) row pair is one of the known pairs (codes from the same indexes)."""
    ok = (a >= 0) & (b >= 0)
    na = int(max(a.max(initial=-1), pairs_a.max(initial=-1))) + 1
    if na * nb <= 50_000_000:  # a lookup table: one gather per row instead of a sort
        table = np.zeros((max(na, 1), max(nb, 1)), dtype=bool)
        good = (pairs_a >= 0) & (pairs_b >= 0)
        table[pairs_a[good], pairs_b[good]] = True
        out: npt.NDArray[np.bool_] = ok & table[np.maximum(a, 0), np.maximum(b, 0)]
        return out
    known = np.unique(pairs_a.astype(np.int64) * (nb + 1) + pairs_b)
    return ok & np.isin(a * (nb + 1) + b, known)


class _Codes:
    """A column kept as codes into per-distinct values (the last one for missing): rows are taken on demand."""

    def __init__(self, codes: npt.NDArray[np.int64], values: npt.NDArray[np.object_]) -> None:
        self.codes, self.values = codes, values

    def take(self, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        out: npt.NDArray[np.object_] = self.values[self.codes[idx]]
        return out


def _codes_of(u: _Unique, per_unique: pd.Series) -> _Codes:
    values = np.empty(len(per_unique) + 1, dtype=object)
    values[:-1] = per_unique.to_numpy(dtype=object)
    values[-1] = None
    return _Codes(u.codes, values)


def _at(values: Any, idx: npt.NDArray[np.int64]) -> pd.Series:
    """``values`` at row positions ``idx`` as text (missing -> ""), for evidence strings of fired rows only."""
    if isinstance(values, _Codes):
        sub = values.take(idx)
    elif isinstance(values, pd.Series):
        sub = values.iloc[idx].to_numpy(dtype=object)
    else:
        sub = np.asarray(values)[idx]
    return pd.Series(sub, dtype=object).map(lambda v: "" if v is None or v is pd.NA else str(v))


class _Unique:
    """A column as codes into its distinct values: look each value up once, broadcast by code."""

    def __init__(self, values: pd.Series) -> None:
        if isinstance(values.dtype, pd.CategoricalDtype):  # certificate columns: already codes
            codes = np.asarray(values.cat.codes, dtype=np.int64)
            cats = values.cat.categories
            used = np.bincount(codes[codes >= 0], minlength=len(cats)) > 0
            if not used.all():  # categories no row uses: renumber, so every value has a row
                codes = np.append(np.cumsum(used) - 1, -1)[codes]
                cats = cats[used]
            self.codes = codes
            self.values = pd.Series(np.asarray(cats, dtype=object), dtype="string")
            return
        codes, uniq = pd.factorize(values, use_na_sentinel=True)
        self.codes = np.asarray(codes, dtype=np.int64)
        self.values = pd.Series(uniq, dtype="string")

    def rows(self, per_unique: Any, fill: Any = None) -> npt.NDArray[Any]:
        """Per-row values from one value per distinct value (``fill`` where the row is missing)."""
        arr = np.asarray(per_unique)
        ext = np.empty(len(arr) + 1, dtype=arr.dtype if fill is None or arr.dtype == object else object)
        ext[:-1] = arr
        ext[-1] = fill if fill is not None else (False if arr.dtype == bool else None)
        return ext[self.codes]


class _Evidence:
    """Collects fired signals: masks, weights and per-row evidence strings for flagged rows.

    Evidence may be given as a callable of the fired rows' positions, so its strings are built
    for those rows only, never for the whole table.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[pd.DataFrame] = []
        self.survival = np.ones(n, dtype=np.float64)

    def add(self, code: str, mask: npt.NDArray[np.bool_], detail: Any, expected: Any = None, observed: Any = None,
            weight: npt.NDArray[np.float64] | float | None = None) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        w = np.full(self.n, SIGNALS[code].weight) if weight is None else np.broadcast_to(weight, (self.n,))
        self.survival[mask] *= 1.0 - np.clip(w[mask], 0, 100) / 100.0
        idx = np.flatnonzero(mask)

        def pick(v: Any) -> Any:
            if isinstance(v, _Codes):
                return v.take(idx)
            if callable(v):
                return np.asarray(v(idx), dtype=object)
            if isinstance(v, pd.Series):
                return v.iloc[idx].to_numpy(dtype=object)
            if isinstance(v, np.ndarray):
                return v[idx]
            return [v] * len(idx)

        self.parts.append(pd.DataFrame({
            "row": idx, "code": code, "weight": w[idx], "detail": pick(detail), "expected": pick(expected),
            "observed": pick(observed),
        }))

    def scores(self) -> npt.NDArray[np.float64]:
        return np.round(100.0 * (1.0 - self.survival), 1)

    def reasons(self) -> npt.NDArray[np.object_]:
        out = np.empty(self.n, dtype=object)
        out.fill(())  # rows without a reason share one immutable empty sequence; flagged rows get lists
        if not self.parts:
            return out
        allr = pd.concat(self.parts, ignore_index=True).sort_values(["row", "weight"], ascending=[True, False],
                                                                     kind="stable")
        rows = allr["row"].to_numpy()
        cols = [_evidence_text(allr[c].to_numpy(dtype=object)) for c in schema.REASON_FIELDS]
        recs = [dict(zip(schema.REASON_FIELDS, values, strict=True)) for values in zip(*cols, strict=True)]
        bounds = np.flatnonzero(np.diff(rows)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(rows)]])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            out[rows[s]] = recs[s:e]
        return out


def _text_of(v: Any) -> str | None:
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


def _evidence_text(values: npt.NDArray[np.object_]) -> list[str | None]:
    """:func:`_text_of` of each value, rendered once per distinct value (2 and 2.0 are one value and one text)."""
    try:
        codes, uniq = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # an unhashable value (a list): render each one
        return [_text_of(v) for v in values.tolist()]
    texts = np.array([*(_text_of(v) for v in uniq), None], dtype=object)
    out: list[str | None] = texts[codes].tolist()  # code -1 (missing) takes the trailing None
    return out


def _top_list(frame: pd.DataFrame, key: str, value: str, count: str, k: int = 3) -> dict[str, str]:
    """Per ``key``: its ``k`` most common ``value``s as 'v (n)', for the 'expected' of a reason."""
    if len(frame) == 0:
        return {}
    top = frame.sort_values(count, ascending=False, kind="stable").groupby(key, observed=True).head(k)
    text = top[value].astype(str) + " (" + top[count].astype(str) + ")"
    joined = text.groupby(top[key].astype(str), observed=True).agg(", ".join)
    return {str(k): str(v) for k, v in joined.items()}


def score(df: pd.DataFrame, baseline: Baseline | None, kb: Knowledge | None = None, *,
          convergence_window: str = "1h", convergence_min_clients: int = 3) -> pd.DataFrame:
    """Score every row of a connections table; returns it with :data:`SCORE_COLUMNS` added.

    ``baseline`` may be ``None`` (knowledge-only scoring); rows whose client is not in the
    baseline are compared with the population and the knowledge base only, as ``compared`` says.
    ``reasons`` holds a list of ``{code, detail, expected, observed}`` dicts on a flagged row and
    the empty tuple on a row without a reason (one shared immutable object, not a million lists).
    Every field is a ``str`` or ``None``, numbers written once as decimal text here, so every writer
    and reader sees one type per field (the schema: :data:`tlsdetect.schema.REASON_FIELDS`).
    """
    kb = kb or load_knowledge()
    out = df.reset_index(drop=True)  # a new frame (copy-on-write): the caller's table is never changed
    n = len(out)
    ev = _Evidence(n)
    # the columns looked up again and again become categoricals: hashed once here, then codes
    cid = client_ids(out, baseline.client_key if baseline is not None else "auto").reset_index(drop=True)
    cid_text = cid
    cid = cid.astype("category")
    ja4, ja3n, ja3 = (_str(out, c).astype("category") for c in ("ja4", "ja3n", "ja3"))
    uaf = ua_family(_str(out, "user_agent"))

    issuer_class = _issuer_signals(out, baseline, kb, ev)
    known_product = _product_signals(ja3, ja3n, ja4, kb, ev)

    codes, hellos = hello_codes(out)
    compared: Any = np.full(n, "population and knowledge only: no baseline given", dtype=object)
    if baseline is not None:
        compared = _baseline_signals(out, baseline, cid, ja4, ja3n, ev)
        _sni_issuer_signal(out, baseline, ev)
        _convergence(out, baseline, cid, ja4, ev, convergence_window, convergence_min_clients)
        _model_signal(codes, hellos, baseline, ev)
    _ua_signals(out, baseline, kb, ja4, ja3n, ja3, uaf, codes, hellos, ev)

    scores = ev.scores()
    out["client_id"] = cid_text.astype("string")
    out["issuer_class"] = _category(issuer_class)
    out["known_product"] = _category(known_product)
    out["score"] = scores
    out["verdict"] = verdict_of(scores)
    out["reasons"] = ev.reasons()
    out["compared"] = _category(compared)
    return out


def _category(values: Any) -> pd.Categorical:
    """Few distinct texts over many rows: a categorical costs one code per row, not one string."""
    if isinstance(values, pd.Categorical):
        return values
    codes, uniq = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniq, dtype=object))


# --- issuers ----------------------------------------------------------------------------------------
_CLASS_RANK = ["interception", "mesh-lookalike", "public-in-mesh", "unknown-in-mesh", "mesh", "public", "private"]


def _issuer_signals(df: pd.DataFrame, baseline: Baseline | None, kb: Knowledge, ev: _Evidence) -> pd.Categorical:
    n = len(df)
    rank = np.full(n, len(_CLASS_RANK), dtype=np.int64)
    mesh = baseline.mesh_cas_ if baseline is not None else None
    keys_by_sha = kb.interception_keys.set_index("sha256") if len(kb.interception_keys) else None
    for role, (key_col, name_col, akid_col) in ROLES.items():
        names = _raw(df, name_col)
        keys = _raw(df, key_col)
        if names.isna().all() and keys.isna().all():
            continue
        if (names.isna() & keys.notna()).any():  # a key without its DN: as text (a categorical takes no new values)
            names = schema.as_text(names).fillna(schema.as_text(keys))
        u = _Unique(names)
        valid = u.codes >= 0
        first = np.full(len(u.values), len(valid), dtype=np.int64)
        np.minimum.at(first, u.codes[valid], np.flatnonzero(valid))  # first row of each distinct name
        first_keys = keys.iloc[first].to_numpy(dtype=object) if len(first) else np.array([], dtype=object)
        keys_u = np.array([k if k is not None and k is not pd.NA else dn_key(str(nm))
                           for k, nm in zip(first_keys, u.values, strict=True)], dtype=object)
        cls = classify_issuers(u.values, kb)
        has = valid
        names_c = _codes_of(u, u.values)
        product, source = _codes_of(u, cls["interception_product"]), _codes_of(u, cls["interception_source"])
        intercept = u.rows(cls["interception_product"].notna().to_numpy())
        public = u.rows(cls["public"].astype("boolean").fillna(False).to_numpy(dtype=bool)) & ~intercept
        what = "server certificate" if role == "server" else "client certificate"
        ev.add("interception_ca", intercept,
               lambda i, what=what, names=names_c, product=product, source=source: (
                   f"the {what} was issued by " + _at(names, i) + ", a known interception CA (" + _at(product, i)
                   + "; source: " + _at(source, i) + ")"),
               expected="an issuer that is not an interception product", observed=names_c)
        rank = np.where(intercept, np.minimum(rank, 0), rank)

        sha_col = "server_cert_sha256" if role == "server" else "peer_cert_sha256"
        if keys_by_sha is not None and sha_col in df.columns:
            su = _Unique(_raw(df, sha_col))
            sha = _codes_of(su, su.values.str.lower())
            pos = su.rows(np.asarray(pd.Index(keys_by_sha.index).get_indexer(su.values.str.lower()), dtype=np.int64),
                          fill=-1).astype(np.int64)
            blocked = pos >= 0
            prod = np.asarray(keys_by_sha["product"].to_numpy(dtype=object))
            ev.add("interception_ca", blocked,
                   lambda i, what=what, pos=pos, prod=prod: [
                       f"the {what} is a blocklisted interception certificate ({prod[p]})" for p in pos[i]],
                   expected="a certificate not on Chromium's interception blocklist", observed=sha)
            rank = np.where(blocked, 0, rank)

        mesh_role = mesh[mesh["role"].isin([role, "any"])] if mesh is not None and len(mesh) else None
        if mesh_role is None or len(mesh_role) == 0:
            rank = np.where(has & public, np.minimum(rank, 5), np.where(has, np.minimum(rank, 6), rank))
            continue
        # the mesh CA by DN (readers put every source's DNs in one order), then its key where the row has
        # one: the leaf's AKID against the mesh CA's SKI, chain certificates (_chain_lookalike)
        mesh_keys = pd.Index(mesh_role["issuer_key"].dropna().unique())
        in_mesh_dn = u.rows(np.asarray(mesh_keys.get_indexer(pd.Index(keys_u, dtype=object)), dtype=np.int64) >= 0)
        mesh_names = "; ".join(mesh_role["issuer"].dropna().unique().tolist())
        skis = mesh_role["ski"].dropna()
        lookalike = np.zeros(n, dtype=bool)
        if len(skis) and akid_col in df.columns:
            au = _Unique(_raw(df, akid_col))
            akid = _codes_of(au, au.values.str.lower())
            known = pd.Index(skis.str.lower().unique())
            unknown_key = au.rows(np.asarray(known.get_indexer(au.values.str.lower())) < 0)
            lookalike = in_mesh_dn & (au.codes >= 0) & unknown_key
            ev.add("mesh_ca_lookalike", lookalike,
                   lambda i, what=what, names=names_c, akid=akid: (
                       f"the {what} names the mesh CA " + _at(names, i) + " as issuer but was signed by key "
                       + _at(akid, i) + ", not the mesh CA's key"),
                   expected="key id " + ", ".join(known.tolist()), observed=akid)
        chain_hit = _chain_lookalike(df, role, mesh_role)
        if chain_hit is not None:
            ev.add("mesh_ca_lookalike", chain_hit & ~lookalike,
                   f"the {what} chain holds a CA certificate with the mesh CA's name and another key or fingerprint",
                   expected="mesh CA " + ", ".join([f"key id {k}" for k in skis.str.lower().unique()]
                                                   + [f"certificate {h}" for h in mesh_role["sha256"].dropna()]),
                   observed=_raw(df, "server_chain"))
            lookalike |= chain_hit
        pub_mesh = has & public & ~in_mesh_dn
        ev.add("public_ca_in_mesh", pub_mesh,
               lambda i, what=what, names=names_c, mesh_names=mesh_names: (
                   "a public CA (" + _at(names, i)
                   + f") issued the {what}; in this mesh only {mesh_names} issues them"),
               expected=mesh_names, observed=names_c)
        unknown = has & ~public & ~intercept & ~in_mesh_dn
        ev.add("unknown_issuer_in_mesh", unknown,
               lambda i, what=what, names=names_c, mesh_names=mesh_names: (
                   f"the {what} was issued by " + _at(names, i) + f", which is neither the mesh CA ({mesh_names}) "
                   "nor a public CA"),
               expected=mesh_names, observed=names_c)
        rank = np.where(lookalike, np.minimum(rank, 1), rank)
        rank = np.where(pub_mesh, np.minimum(rank, 2), rank)
        rank = np.where(unknown, np.minimum(rank, 3), rank)
        rank = np.where(has & in_mesh_dn, np.minimum(rank, 4), rank)
    codes = np.where(rank >= len(_CLASS_RANK), -1, rank)
    return pd.Categorical.from_codes(codes, categories=pd.Index(_CLASS_RANK, dtype=object))


def _chain_lookalike(df: pd.DataFrame, role: str, mesh_role: pd.DataFrame) -> npt.NDArray[np.bool_] | None:
    """Chains (pcap TLS <= 1.2) holding a CA cert named like the mesh CA but with another key or SHA-256.

    A chain certificate is compared by its SKI where both it and the mesh CA have one (a re-issued
    mesh CA keeps its key), else by its SHA-256; ``None`` when there is nothing to compare with.
    A source without chains, or whose chains are all missing, gives no hit.
    """
    shas = set(mesh_role["sha256"].dropna().str.lower())
    skis = set(mesh_role["ski"].dropna().str.lower())
    if role != "server" or not (shas or skis) or "server_chain" not in df.columns:
        return None
    keys = set(mesh_role["issuer_key"].dropna())
    chains = _Unique(_raw(df, "server_chain"))  # each distinct chain parsed once
    hit = np.zeros(len(chains.values), dtype=bool)
    for i, text in enumerate(chains.values):
        try:
            chain = json.loads(text)
        except (TypeError, ValueError):
            continue
        for cert in chain[1:] if isinstance(chain, list) else []:
            if not isinstance(cert, dict) or dn_key(cert.get("subject")) not in keys:
                continue
            ski = str(cert.get("ski") or "").lower()
            if ski and skis:
                hit[i] |= ski not in skis
            elif shas:
                hit[i] |= str(cert.get("sha256", "")).lower() not in shas
    return np.asarray(chains.rows(hit), dtype=bool)  # a row without a chain: no hit


# --- known products ---------------------------------------------------------------------------------
def _product_signals(ja3: pd.Series, ja3n: pd.Series, ja4: pd.Series, kb: Knowledge,
                     ev: _Evidence) -> npt.NDArray[np.object_]:
    n = len(ja3)
    product = np.full(n, None, dtype=object)
    exact = np.zeros(n, dtype=bool)
    exact_ja4 = set(kb.product_fingerprints.loc[kb.product_fingerprints["kind"] == "ja4", "value"])
    for kind, values in (("ja3", ja3), ("ja3n", ja3n), ("ja4", ja4)):
        if values.isna().all():
            continue
        u = _Unique(values)
        mu = match_fingerprints(u.values, kind, kb)
        m = {c: _codes_of(u, mu[c]) for c in ("product", "product_type", "source")}
        hit = u.rows(mu["product"].notna().to_numpy())
        if kind == "ja4":
            full = hit & u.rows(u.values.isin(exact_ja4).to_numpy())
            partial = hit & ~full & ~exact
            ev.add("partial_interception_fingerprint", partial,
                   lambda i, values=values, m=m: (
                       "the JA4 " + _at(values, i) + " matches the shape and cipher list of " + _at(m["product"], i)
                       + " (" + _at(m["product_type"], i) + "; source: " + _at(m["source"], i)
                       + "); the fields that source lacks were not compared"),
                   expected="a hello unlike any interception product's", observed=values)
            take = partial & (product == None)  # noqa: E711
            product[take] = m["product"].take(np.flatnonzero(take))
            hit = full
        new = hit & ~exact
        ev.add("known_interception_fingerprint", new,
               lambda i, kind=kind, values=values, m=m: (
                   f"the {kind.upper()} " + _at(values, i) + " is that of " + _at(m["product"], i)
                   + " (" + _at(m["product_type"], i) + "; source: " + _at(m["source"], i) + ")"),
               expected="the client's own TLS stack", observed=values)
        product[new] = m["product"].take(np.flatnonzero(new))
        exact |= hit
    return product


# --- client baseline --------------------------------------------------------------------------------
def _baseline_signals(df: pd.DataFrame, b: Baseline, cid: pd.Series, ja4: pd.Series, ja3n: pd.Series,
                      ev: _Evidence) -> Any:
    clients = pd.Index(b.clients_["client_id"])
    c = _lookup(cid, clients)
    known_client = c >= 0
    conns = b.clients_["connections"].to_numpy()
    stab = b.client_stability().set_index("client_id").reindex(clients)["stability"].fillna(0.0).to_numpy()
    prev = b.prevalence()

    seen: dict[str, npt.NDArray[np.bool_]] = {}
    for kind, values in (("ja4", ja4), ("ja3n", ja3n)):
        fp = b.fingerprints_[b.fingerprints_["kind"] == kind]
        vals = pd.Index(fp["value"].unique())
        v = _lookup(values, vals)
        pairs_c = np.asarray(clients.get_indexer(fp["client_id"]), dtype=np.int64)
        pairs_v = np.asarray(vals.get_indexer(fp["value"]), dtype=np.int64)
        seen[kind] = _pair_in(c, v, pairs_c, pairs_v, len(vals))
    has4, has3 = ja4.notna().to_numpy(), ja3n.notna().to_numpy()
    # a JA4 can change with the SNI or ALPN alone; it is a new hello only when JA3N (the lists) is new too
    new = known_client & (
        (has4 & ~seen["ja4"] & (~has3 | ~seen["ja3n"])) | (~has4 & has3 & ~seen["ja3n"])
    )
    def observed(i: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        out: npt.NDArray[np.object_] = np.where(has4[i], ja4.iloc[i].to_numpy(dtype=object),
                                                ja3n.iloc[i].to_numpy(dtype=object))
        return out
    p4 = prev[prev["kind"] == "ja4"].set_index("value") if len(prev) else pd.DataFrame(columns=["clients"])
    pos = _lookup(ja4, pd.Index(p4.index))
    others = np.where(pos >= 0, np.asarray(p4["clients"].to_numpy(dtype=np.int64))[np.maximum(pos, 0)]
                      if len(p4) else 0, 0)
    weight = (30.0 + 30.0 * stab[np.maximum(c, 0)]) * np.where(others > 0, 0.6, 1.0)
    fp = b.fingerprints_[b.fingerprints_["kind"] == "ja4"]

    def expected(i: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        ci = np.unique(c[i])
        mine = fp[fp["client_id"].isin(clients[ci])]
        tops = _top_list(mine, "client_id", "value", "count")
        per_client = np.array([tops.get(str(x)) for x in clients[ci]], dtype=object)
        return per_client[np.searchsorted(ci, c[i])]

    def detail(i: npt.NDArray[np.int64]) -> pd.Series:
        ci = np.maximum(c[i], 0)
        pct = pd.Series(np.round(stab[ci] * 100).astype(int).astype(str), dtype=object)
        tail = np.where(others[i] > 0, "; " + others[i].astype(str) + " other baseline client(s) use it",
                        "; no baseline client uses it")
        seen_now = pd.Series(observed(i), dtype=object).fillna("")
        return ("client " + _at(cid, i) + " sent " + seen_now + ", a ClientHello it never sent in the "
                "baseline (" + pct + "% of its " + pd.Series(conns[ci].astype(str), dtype=object)
                + " baseline connections used its usual one)" + pd.Series(tail, dtype=object))

    ev.add("new_fingerprint_for_client", new, detail, expected=expected, observed=observed, weight=weight)

    # TLS downgrade: the highest version offered is below anything this client offered before
    vers = b.versions_
    if len(vers):
        floor = pd.to_numeric(vers.groupby("client_id", observed=True)["max_version"].min(), errors="coerce")
        fl = np.append(floor.reindex(clients).to_numpy(dtype=np.float64), np.nan)
        # the version digits of each distinct JA4, broadcast by the categorical's codes
        cats = ja4.cat.categories
        v_cat = np.append(pd.to_numeric(pd.Series(cats.str.slice(1, 3)), errors="coerce").to_numpy(np.float64), np.nan)
        row_num = v_cat[ja4.cat.codes.to_numpy()]
        floor_num = fl[np.where(known_client, c, -1)]
        down = np.nan_to_num(row_num, nan=np.inf) < np.nan_to_num(floor_num, nan=-np.inf)


        def version(values: npt.NDArray[np.float64]) -> list[str | None]:
            return [None if np.isnan(v) else f"{v:02.0f}" for v in values]

        ev.add("tls_downgrade", down,
               lambda i: ("client " + _at(cid, i) + " offered at most TLS " + pd.Series(version(row_num[i]))
                          + "; in the baseline it always offered at least TLS " + pd.Series(version(floor_num[i]))),
               expected=lambda i: version(floor_num[i]), observed=lambda i: version(row_num[i]))

    # one text per distinct client, broadcast by the categorical's codes
    uniq = cid.cat.categories
    pos_u = np.asarray(clients.get_indexer(uniq), dtype=np.int64)
    texts = [f"client baseline ({conns[p]} connections), population, knowledge" if p >= 0 else
             f"population and knowledge only: client {u} is not in the baseline"
             for u, p in zip(uniq, pos_u, strict=True)]
    texts.append("population and knowledge only: the row has no client id")
    text_codes, text_cats = pd.factorize(pd.Series(texts, dtype=object))
    return pd.Categorical.from_codes(text_codes[cid.cat.codes.to_numpy()], categories=pd.Index(text_cats, dtype=object))


def _sni_issuer_signal(df: pd.DataFrame, b: Baseline, ev: _Evidence) -> None:
    """A server name that presented certificates of other issuers throughout the baseline."""
    si = b.sni_issuers_
    if len(si) == 0 or "sni" not in df.columns or "server_issuer_key" not in df.columns:
        return
    sni_cat = _str(df, "sni").astype("category")
    sni = sni_cat.cat.rename_categories(list(sni_cat.cat.categories.str.lower())) \
        if not sni_cat.cat.categories.str.lower().duplicated().any() else sni_cat.astype("string").str.lower()
    key = _raw(df, "server_issuer_key")
    snis = pd.Index(si["sni"].unique())
    keys = pd.Index(si["issuer_key"].unique())
    s_pos, k_pos = _lookup(sni, snis), _lookup(key, keys)
    seen = _pair_in(s_pos, k_pos, np.asarray(snis.get_indexer(si["sni"]), dtype=np.int64),
                    np.asarray(keys.get_indexer(si["issuer_key"]), dtype=np.int64), len(keys))
    changed = (s_pos >= 0) & key.notna().to_numpy() & ~seen
    if not changed.any():
        return
    usual = si.sort_values("count", ascending=False).groupby("sni", observed=True)["issuer"].agg(
        lambda v: "; ".join(v.astype(str).head(3)))
    usual_arr = usual.reindex(snis).to_numpy(dtype=object)
    expected = usual_arr[np.maximum(s_pos, 0)]
    def names(i: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        shown = _raw(df, "server_issuer").iloc[i].to_numpy(dtype=object)
        fallback = key.iloc[i].to_numpy(dtype=object)
        out: npt.NDArray[np.object_] = np.where(pd.isna(shown), fallback, shown)
        return out

    ev.add("issuer_changed_for_sni", changed,
           lambda i: ("the server " + _at(sni, i) + " presented a certificate issued by "
                      + pd.Series(names(i), dtype=object).fillna("")
                      + "; throughout the baseline its certificates came from " + _at(expected, i)),
           expected=expected, observed=names)


def _convergence(df: pd.DataFrame, b: Baseline, cid: pd.Series, ja4: pd.Series, ev: _Evidence, window: str,
                 min_clients: int) -> None:
    """Many clients on one fingerprint the population never used, inside one time window."""
    if "ts" not in df.columns or ja4.isna().all():
        return
    known = pd.Index(b.fingerprints_.loc[b.fingerprints_["kind"] == "ja4", "value"].unique())
    ts = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True)
    # a row without a time cannot be placed in a window
    fresh = ja4.notna().to_numpy() & (_lookup(ja4, known) < 0) & ts.notna().to_numpy()
    if not fresh.any():
        return
    bucket = ts[fresh].dt.floor(window)
    frame = pd.DataFrame({"bucket": bucket.to_numpy(), "ja4": ja4[fresh].to_numpy(),
                          "client": cid[fresh].to_numpy()})
    counts = frame.groupby(["bucket", "ja4"], observed=True)["client"].transform("nunique")
    hit = np.zeros(len(df), dtype=bool)
    hit[np.flatnonzero(fresh)] = counts.to_numpy() >= min_clients
    many = np.zeros(len(df), dtype=np.int64)
    many[np.flatnonzero(fresh)] = counts.to_numpy()
    ev.add("fingerprint_convergence", hit,
           lambda i: (_at(many, i) + " clients started sending " + _at(ja4, i)
                      + f" within one {window} window; no baseline client ever used it (a new middlebox in the path?)"),
           expected="fingerprints spread as clients update, one by one", observed=ja4)


def _model_signal(codes: npt.NDArray[np.int64], hellos: pd.DataFrame, b: Baseline, ev: _Evidence) -> None:
    if len(hellos) == 0:
        return
    if b.model_ is not None:
        dist, nearest = b.model_.distances(hellos)
        row_d = np.where(codes >= 0, dist[np.maximum(codes, 0)], np.nan)
        out = np.nan_to_num(row_d, nan=0.0) > b.novelty_threshold
        labels = np.array([*b.model_.labels, ""], dtype=object)
        near = labels[np.where(codes >= 0, nearest[np.maximum(codes, 0)], -1)]
        shared = np.round(100 * (1 - np.nan_to_num(row_d, nan=1.0))).astype(int)
        usual = f"{100 * (1 - b.novelty_threshold):.0f}"
        ev.add("model_outlier", out,
               lambda i: ("the closest ClientHello the baseline population sent (" + _at(near, i) + ") shares only "
                          + _at(shared, i) + f"% of this hello's values; at least {usual}% is usual"),
               expected=f"a hello within Jaccard distance {b.novelty_threshold} of a known one",
               observed=np.round(row_d, 3))
    weak = weak_cipher_count(hellos)
    pop_weak = int(weak_cipher_count(b.hellos_).sum()) if len(b.hellos_) else 0
    if pop_weak == 0:
        row_weak = np.where(codes >= 0, weak[np.maximum(codes, 0)], 0)
        ev.add("weak_ciphers", row_weak > 0,
               lambda i: ("the hello offers " + _at(row_weak, i) + " weak cipher(s) (NULL, anon, export, RC4 or DES); "
                          "no hello in the baseline offered any"),
               expected="no weak ciphers", observed=row_weak)


_FAMILY_TABLES: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _FamilyTable:
    values: pd.Index
    families: pd.Index
    pair_values: npt.NDArray[np.int64]
    pair_families: npt.NDArray[np.int64]
    expected: npt.NDArray[np.object_]  # per value: the families that send it, as text


def _family_tables(b: Baseline | None, kb: Knowledge) -> dict[str, _FamilyTable]:
    """Per fingerprint kind: which stack families send each value (baseline, FoxIO, salesforce, own stacks).

    Built once per (baseline, knowledge) pair and kept while both live: a stream scores many small
    batches against the same two.
    """
    per_kb = _FAMILY_TABLES.setdefault(kb, {})
    key = id(b) if b is not None else None
    if key in per_kb and per_kb[key][0] is b:
        return per_kb[key][1]  # type: ignore[no-any-return]
    pairs: list[pd.DataFrame] = []
    if b is not None and len(b.fp_families_):
        pairs.append(b.fp_families_[["kind", "value", "ua_family"]].rename(columns={"ua_family": "family"}))
    apps = kb.applications.assign(family=kb.applications["family"].astype("string"))
    pairs.append(apps[["kind", "value", "family"]])
    stacks = kb.stacks.assign(family=kb.stacks["stack"].map(family_of_stack).astype("string"))
    pairs.append(stacks[["kind", "value", "family"]])
    known = pd.concat(pairs, ignore_index=True).dropna()
    known = known[known["family"] != "other"]
    out: dict[str, _FamilyTable] = {}
    for kind in ("ja4", "ja3n", "ja3"):
        sub = known[known["kind"] == kind].drop_duplicates(["value", "family"])
        if len(sub) == 0:
            continue
        joined = sub.groupby("value", observed=True)["family"].agg(lambda s: ", ".join(sorted(set(s))))
        vals, fams = pd.Index(sub["value"].unique()), pd.Index(sub["family"].unique())
        out[kind] = _FamilyTable(vals, fams, np.asarray(vals.get_indexer(pd.Index(sub["value"])), dtype=np.int64),
                                 np.asarray(fams.get_indexer(pd.Index(sub["family"])), dtype=np.int64),
                                 joined.reindex(vals).to_numpy(dtype=object))
    per_kb.clear()  # one baseline at a time per knowledge base: a reloaded baseline replaces the old entry
    per_kb[key] = (b, out)
    return out


def _ua_signals(df: pd.DataFrame, b: Baseline | None, kb: Knowledge, ja4: pd.Series, ja3n: pd.Series,
                ja3: pd.Series, uaf: pd.Series, codes: npt.NDArray[np.int64], hellos: pd.DataFrame,
                ev: _Evidence) -> None:
    """User-Agent family vs the families known to send this fingerprint; Chromium without GREASE."""
    if uaf.isna().all():
        return
    n = len(df)
    tables = _family_tables(b, kb)
    mismatch = np.zeros(n, dtype=bool)
    decided = np.zeros(n, dtype=bool)
    expected = np.full(n, None, dtype=object)
    for kind, values in (("ja4", ja4), ("ja3n", ja3n), ("ja3", ja3)):
        if kind not in tables or values.isna().all():
            continue
        t = tables[kind]
        pos = _lookup(values, t.values)
        f = _lookup(uaf, t.families)
        has = (pos >= 0) & ~decided & uaf.notna().to_numpy()
        ok = _pair_in(pos, f, t.pair_values, t.pair_families, len(t.families))
        bad = has & ~ok
        mismatch |= bad
        decided |= has
        exp_text = t.expected
        expected[bad] = exp_text[pos[bad]]
    ev.add("ua_fingerprint_mismatch", mismatch,
           lambda i: ("the User-Agent claims " + _at(uaf, i) + " but the hello is one that " + _at(expected, i)
                      + " sends"),
           expected=expected, observed=uaf)

    if len(hellos):
        grease = has_grease(hellos)
        no_grease = (codes >= 0) & ~grease[np.maximum(codes, 0)] & (uaf == "chromium").fillna(False).to_numpy()
        ev.add("browser_without_grease", no_grease,
               "the User-Agent claims Chromium, which puts GREASE values in every ClientHello; this hello has none",
               expected="GREASE in ciphers, extensions and groups", observed="no GREASE")
        weak = weak_cipher_count(hellos)
        row_weak = np.where(codes >= 0, weak[np.maximum(codes, 0)], 0)
        browser = uaf.isin(list(BROWSERS)).fillna(False).to_numpy()
        # where the population never offered weak ciphers, the model signal already said so
        population_weak = b is None or (len(b.hellos_) > 0 and int(weak_cipher_count(b.hellos_).sum()) > 0)
        ev.add("weak_ciphers", (row_weak > 0) & browser & population_weak,
               lambda i: ("the User-Agent claims a current browser, which offers no weak ciphers; this hello offers "
                          + _at(row_weak, i)),
               expected="no NULL, anon, export, RC4 or DES ciphers", observed=row_weak)


# --- summaries --------------------------------------------------------------------------------------
def summarize(scored: pd.DataFrame, top: int = 5) -> dict[str, Any]:
    """Verdict counts, the most frequent reasons and the most flagged clients."""
    verdicts = scored["verdict"].value_counts().reindex(list(VERDICTS), fill_value=0)
    flagged = scored[scored["verdict"] != "ok"]
    codes = pd.Series([r["code"] for rs in flagged["reasons"] for r in rs], dtype="string")
    clients = flagged["client_id"].value_counts().head(top)
    return {
        "connections": len(scored),
        "verdicts": {k: int(v) for k, v in verdicts.items()},
        "top_reasons": {str(k): int(v) for k, v in codes.value_counts().head(top).items()},
        "top_flagged_clients": {str(k): int(v) for k, v in clients.items()},
    }
