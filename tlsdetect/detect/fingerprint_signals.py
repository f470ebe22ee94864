"""Fingerprint signals: known interception products' hellos (knowledge), a hello new for its client,
a TLS downgrade (baseline) and many clients converging on one new hello at once."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import Unique, codes_of, pair_in, positions, texts_at
from tlsdetect.detect.evidence import Evidence, top_list
from tlsdetect.detect.knowledge import Knowledge, match_fingerprints

__all__ = ["baseline_signals", "convergence_signal", "product_signals"]


def product_signals(ja3: pd.Series, ja3n: pd.Series, ja4: pd.Series, kb: Knowledge,
                     ev: Evidence) -> npt.NDArray[np.object_]:
    n = len(ja3)
    product = np.full(n, None, dtype=object)
    exact = np.zeros(n, dtype=bool)
    exact_ja4 = set(kb.product_fingerprints.loc[kb.product_fingerprints["kind"] == "ja4", "value"])
    for kind, values in (("ja3", ja3), ("ja3n", ja3n), ("ja4", ja4)):
        if values.isna().all():
            continue
        u = Unique(values)
        mu = match_fingerprints(u.values, kind, kb)
        m = {c: codes_of(u, mu[c]) for c in ("product", "product_type", "source")}
        hit = u.rows(mu["product"].notna().to_numpy())
        if kind == "ja4":
            full = hit & u.rows(u.values.isin(exact_ja4).to_numpy())
            partial = hit & ~full & ~exact
            ev.add("partial_interception_fingerprint", partial,
                   lambda i, values=values, m=m: (
                       "the JA4 " + texts_at(values, i) + " matches the shape and cipher list of "
                       + texts_at(m["product"], i)
                       + " (" + texts_at(m["product_type"], i) + "; source: " + texts_at(m["source"], i)
                       + "); the fields that source lacks were not compared"),
                   expected="a hello unlike any interception product's", observed=values)
            take = partial & (product == None)  # noqa: E711
            product[take] = m["product"].at_rows(np.flatnonzero(take))
            hit = full
        new = hit & ~exact
        ev.add("known_interception_fingerprint", new,
               lambda i, kind=kind, values=values, m=m: (
                   f"the {kind.upper()} " + texts_at(values, i) + " is that of " + texts_at(m["product"], i)
                   + " (" + texts_at(m["product_type"], i) + "; source: " + texts_at(m["source"], i) + ")"),
               expected="the client's own TLS stack", observed=values)
        product[new] = m["product"].at_rows(np.flatnonzero(new))
        exact |= hit
    return product


# --- client baseline --------------------------------------------------------------------------------
def baseline_signals(df: pd.DataFrame, b: Baseline, cid: pd.Series, ja4: pd.Series, ja3n: pd.Series,
                      ev: Evidence) -> Any:
    clients = pd.Index(b.clients_["client_id"])
    c = positions(cid, clients)
    known_client = c >= 0
    conns = b.clients_["connections"].to_numpy()
    stab = b.client_stability().set_index("client_id").reindex(clients)["stability"].fillna(0.0).to_numpy()
    prev = b.prevalence()

    seen: dict[str, npt.NDArray[np.bool_]] = {}
    client_of: dict[str, npt.NDArray[np.int64]] = {}  # each learned pair's client, as a position in clients
    for kind, values in (("ja4", ja4), ("ja3n", ja3n)):
        fp = b.fingerprints_[b.fingerprints_["kind"] == kind]
        vals = pd.Index(fp["value"].unique())
        v = positions(values, vals)
        pairs_c = client_of[kind] = np.asarray(clients.get_indexer(fp["client_id"]), dtype=np.int64)
        pairs_v = np.asarray(vals.get_indexer(fp["value"]), dtype=np.int64)
        seen[kind] = pair_in(c, v, pairs_c, pairs_v, len(vals))
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
    pos = positions(ja4, pd.Index(p4.index))
    others = np.where(pos >= 0, np.asarray(p4["clients"].to_numpy(dtype=np.int64))[np.maximum(pos, 0)]
                      if len(p4) else 0, 0)
    weight = (30.0 + 30.0 * stab[np.maximum(c, 0)]) * np.where(others > 0, 0.6, 1.0)
    fp = b.fingerprints_[b.fingerprints_["kind"] == "ja4"]

    def expected(i: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        ci = np.unique(c[i])
        wanted = np.zeros(len(clients) + 1, dtype=bool)  # by position: no string hashing of the pairs
        wanted[ci] = True
        mine = fp[wanted[client_of["ja4"]]]  # -1 (a client not in clients) takes the trailing False
        tops = top_list(mine, "client_id", "value", "count")
        per_client = np.array([tops.get(str(x)) for x in clients[ci]], dtype=object)
        return per_client[np.searchsorted(ci, c[i])]

    def detail(i: npt.NDArray[np.int64]) -> pd.Series:
        ci = np.maximum(c[i], 0)
        pct = pd.Series(np.round(stab[ci] * 100).astype(int).astype(str), dtype=object)
        tail = np.where(others[i] > 0, "; " + others[i].astype(str) + " other baseline client(s) use it",
                        "; no baseline client uses it")
        seen_now = pd.Series(observed(i), dtype=object).fillna("")
        return ("client " + texts_at(cid, i) + " sent " + seen_now + ", a ClientHello it never sent in the "
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


        def version(values: npt.NDArray[np.float64]) -> npt.NDArray[np.object_]:
            """Two-digit version text of each value (None for NaN), rendered once per distinct value."""
            codes, uniq = pd.factorize(values, use_na_sentinel=True)
            texts = np.array([*(f"{v:02.0f}" for v in uniq), None], dtype=object)
            out: npt.NDArray[np.object_] = texts[codes]
            return out

        ev.add("tls_downgrade", down,
               lambda i: ("client " + texts_at(cid, i) + " offered at most TLS " + pd.Series(version(row_num[i]))
                          + "; in the baseline it always offered at least TLS " + pd.Series(version(floor_num[i]))),
               expected=lambda i: version(floor_num[i]), observed=lambda i: version(row_num[i]))

    # one text per distinct client, broadcast by the categorical's codes
    uniq = cid.cat.categories
    pos_u = np.asarray(clients.get_indexer(uniq), dtype=np.int64)
    in_base = pos_u >= 0
    texts = np.empty(len(uniq) + 1, dtype=object)
    texts[:-1][in_base] = ("client baseline (" + pd.Series(conns[pos_u[in_base]]).astype(str).to_numpy(dtype=object)
                           + " connections), population, knowledge")
    texts[:-1][~in_base] = ("population and knowledge only: client "
                            + pd.Index(uniq[~in_base]).astype(str).to_numpy(dtype=object) + " is not in the baseline")
    texts[-1] = "population and knowledge only: the row has no client id"
    text_codes, text_cats = pd.factorize(pd.Series(texts, dtype=object))
    return pd.Categorical.from_codes(text_codes[cid.cat.codes.to_numpy()], categories=pd.Index(text_cats, dtype=object))


def convergence_signal(df: pd.DataFrame, b: Baseline, cid: pd.Series, ja4: pd.Series, ev: Evidence, window: str,
                 min_clients: int) -> None:
    """Many clients on one fingerprint the population never used, inside one time window."""
    if "ts" not in df.columns or ja4.isna().all():
        return
    known = pd.Index(b.fingerprints_.loc[b.fingerprints_["kind"] == "ja4", "value"].unique())
    ts = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True)
    # a row without a time cannot be placed in a window
    fresh = ja4.notna().to_numpy() & (positions(ja4, known) < 0) & ts.notna().to_numpy()
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
           lambda i: (texts_at(many, i) + " clients started sending " + texts_at(ja4, i)
                      + f" within one {window} window; no baseline client ever used it (a new middlebox in the path?)"),
           expected="fingerprints spread as clients update, one by one", observed=ja4)
