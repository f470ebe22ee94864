"""Fingerprint signals: known interception products' hellos (knowledge), a hello new for its client,
a TLS downgrade (baseline) and many clients converging on one new hello at once.

A client's JA4 is compared as its stack key (:mod:`~tlsdetect.detect.ja4_parts`: JA4_a without the
connection's SNI flag). Where the row's source and a baseline entry's source compute JA4_c differently
(:mod:`~tlsdetect.detect.fingerprint_sources`: Envoy <= 1.40 keeps GREASE in signature algorithms) only
JA4_a and JA4_b are compared, and where the baseline saw a client's JA4_c vary for one JA4_ab (at least
:data:`VARY_MIN_DISTINCT` distinct values, the most common one on at most :data:`VARY_MAX_TOP_SHARE` of its
connections: Chromium >= 152 through Envoy 1.40 spreads over 16 GREASE values, 15 distinct JA4_c in 45
connections measured; a client that updated once keeps most connections on one), a new JA4_c with that
JA4_ab is not new. All of it per distinct (client, source, JA4), broadcast by codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import Unique, codes_of, pair_in, positions, text_column, texts_at
from tlsdetect.detect.evidence import Evidence, top_list
from tlsdetect.detect.fingerprint_sources import SPEC, c_group
from tlsdetect.detect.ja4_parts import ja4_parts
from tlsdetect.detect.knowledge import Knowledge, match_fingerprints

__all__ = ["VARY_MAX_TOP_SHARE", "VARY_MIN_DISTINCT", "baseline_signals", "convergence_signal", "product_signals",
           "stack_seen"]

#: A client's JA4_c "varies per connection" for one JA4_ab when the baseline saw at least this many distinct
#: JA4_c for it (from one source group) ...
VARY_MIN_DISTINCT = 3
#: ... and its most common JA4_c holds at most this share of the connections with that JA4_ab.
VARY_MAX_TOP_SHARE = 0.5
#: ``stack_seen``'s second answer: how a row's JA4 was compared.
COMPARED_STACK, COMPARED_AB = 0, 1


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
def _learned_stacks(b: Baseline) -> pd.DataFrame:
    """The baseline's (client, origin, JA4_ab, JA4_c, count) rows; a baseline saved before ``ja4_stacks``
    gives its JA4s with an unknown origin (taken as the spec's)."""
    st = getattr(b, "ja4_stacks_", None)
    if st is not None and len(st):
        learned: pd.DataFrame = st[["client_id", "origin", "ja4_ab", "ja4_c", "count"]]
        return learned
    fp = b.fingerprints_[b.fingerprints_["kind"] == "ja4"]
    parts = ja4_parts(fp["value"].reset_index(drop=True))
    out = pd.DataFrame({"client_id": fp["client_id"].to_numpy(), "origin": "unknown", "ja4_ab": parts["ab"].to_numpy(),
                        "ja4_c": parts["c"].to_numpy(), "count": fp["count"].to_numpy()})
    return out[out["ja4_ab"].notna().to_numpy()]


def stack_seen(b: Baseline, clients: pd.Index, c: npt.NDArray[np.int64], ja4: pd.Series,
               origin: pd.Series) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int8]]:
    """Per row: whether its client's baseline holds its JA4 as a stack, and how it was compared
    (:data:`COMPARED_STACK`: the stack key, or :data:`COMPARED_AB`: JA4_ab only, the client's baseline having
    no JA4_c from this row's source group). Computed once per distinct (client, source group, JA4)."""
    n = len(ja4)
    groups = c_group(origin) if len(origin) == n else np.full(n, SPEC, dtype=object)
    g_codes, g_uniq = pd.factorize(pd.Series(groups, dtype=object))
    cat = ja4.reset_index(drop=True)
    if not isinstance(cat.dtype, pd.CategoricalDtype):
        cat = cat.astype("string").astype("category")
    j_codes = np.asarray(cat.cat.codes, dtype=np.int64)
    has = (c >= 0) & (j_codes >= 0)
    seen = np.zeros(n, dtype=bool)
    how = np.full(n, COMPARED_STACK, dtype=np.int8)
    learned = _learned_stacks(b)
    if not has.any() or len(learned) == 0:
        return seen, how
    nj, ng = len(cat.cat.categories) + 1, len(g_uniq) + 1
    key = (c.astype(np.int64) * ng + g_codes) * nj + j_codes
    inv, uk = pd.factorize(np.where(has, key, -1))  # hashed, not sorted: a million rows in ~20 ms
    inv, uk = np.asarray(inv, dtype=np.int64), np.asarray(uk, dtype=np.int64)
    live = uk >= 0
    parts = ja4_parts(pd.Series(cat.cat.categories, dtype="string"))
    d_j, d_g, d_c = uk[live] % nj, (uk[live] // nj) % ng, uk[live] // (nj * ng)
    d = pd.DataFrame({"client_id": np.asarray(clients, dtype=object)[d_c],
                      "group": np.asarray(g_uniq, dtype=object)[d_g],
                      "ja4_ab": parts["ab"].to_numpy(dtype=object)[d_j],
                      "ja4_c": parts["c"].to_numpy(dtype=object)[d_j]})
    lg = learned.assign(group=c_group(learned["origin"]), client_id=learned["client_id"].astype(object),
                        ja4_ab=learned["ja4_ab"].astype(object), ja4_c=learned["ja4_c"].astype(object))
    full = pd.MultiIndex.from_frame(lg[["client_id", "group", "ja4_ab", "ja4_c"]])
    hit_full = pd.MultiIndex.from_frame(d[["client_id", "group", "ja4_ab", "ja4_c"]]).isin(full)
    per_c = lg.groupby(["client_id", "group", "ja4_ab", "ja4_c"], observed=True)["count"].sum()
    per_ab = per_c.groupby(level=[0, 1, 2]).agg(["size", "sum", "max"])
    varies = per_ab[(per_ab["size"] >= VARY_MIN_DISTINCT) & (per_ab["max"] <= VARY_MAX_TOP_SHARE * per_ab["sum"])]
    hit_vary = pd.MultiIndex.from_frame(d[["client_id", "group", "ja4_ab"]]).isin(varies.index)
    own_groups = pd.MultiIndex.from_frame(lg[["client_id", "group"]].drop_duplicates())
    same_group = pd.MultiIndex.from_frame(d[["client_id", "group"]]).isin(own_groups)
    # JA4_ab learned from another source group: that entry's JA4_c cannot be compared with this one's
    other = lg[["client_id", "ja4_ab", "group"]].drop_duplicates().merge(
        d[["client_id", "ja4_ab", "group"]].reset_index(), on=["client_id", "ja4_ab"], suffixes=("_b", ""))
    other = other[other["group_b"] != other["group"]]
    hit_other = np.zeros(len(d), dtype=bool)
    hit_other[other["index"].to_numpy(dtype=np.int64)] = True
    d_seen = np.append(hit_full | hit_vary | hit_other, False)
    d_how = np.append(np.where(same_group, COMPARED_STACK, COMPARED_AB).astype(np.int8), COMPARED_STACK)
    pos = np.where(live[inv], np.cumsum(live)[inv] - 1, len(d))  # rows without a client or JA4: the trailing pad
    return d_seen[pos], d_how[pos]


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
    # the stack (no SNI flag), or JA4_ab alone across sources or where the client's JA4_c varies
    stacked, how = stack_seen(b, clients, c, ja4, text_column(df, "fingerprint_origin"))
    seen["ja4"] = seen["ja4"] | stacked
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
        tail = tail + np.where(~has4[i], "", np.where(
            how[i] == COMPARED_AB, "; JA4_ab compared (JA4_a without its SNI flag, JA4_b): the source's JA4_c is "
            "not computed as the baseline's", "; compared without JA4_a's SNI flag"))
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
    # compared as stacks: clients dialling IP literals (no SNI) at once are not a new hello
    learned = b.fingerprints_.loc[b.fingerprints_["kind"] == "ja4", "value"].drop_duplicates().reset_index(drop=True)
    known = pd.Index(ja4_parts(learned)["stack"].dropna().unique())
    cat = ja4 if isinstance(ja4.dtype, pd.CategoricalDtype) else ja4.astype("string").astype("category")
    codes = np.asarray(cat.cat.codes, dtype=np.int64)
    cat_stack = ja4_parts(pd.Series(cat.cat.categories, dtype="string"))["stack"]
    cat_known = np.append(np.asarray(known.get_indexer(cat_stack)) >= 0, False)  # code -1: the trailing False
    s_codes, _ = pd.factorize(cat_stack)
    stack = np.append(np.asarray(s_codes, dtype=np.int64), -1)[codes]  # one id per stack, not per JA4
    ts = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True)
    # a row without a time cannot be placed in a window
    fresh = ja4.notna().to_numpy() & ~cat_known[codes] & ts.notna().to_numpy()
    if not fresh.any():
        return
    bucket = ts[fresh].dt.floor(window)
    frame = pd.DataFrame({"bucket": bucket.to_numpy(), "ja4": stack[fresh],
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
