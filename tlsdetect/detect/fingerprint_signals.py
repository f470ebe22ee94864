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
from tlsdetect.detect.columns import Codes, Unique, pair_in, positions, text_column, texts_at
from tlsdetect.detect.derived import derived
from tlsdetect.detect.evidence import Evidence, top_list
from tlsdetect.detect.fingerprint_sources import SPEC, c_group
from tlsdetect.detect.ja4_parts import ja4_parts
from tlsdetect.detect.knowledge import MATCH_COLUMNS, Knowledge, fingerprint_matches

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
    exact_ja4: set[str] = kb._memo("product_ja4_exact", lambda: set(
        kb.product_fingerprints.loc[kb.product_fingerprints["kind"] == "ja4", "value"]))
    for kind, values in (("ja3", ja3), ("ja3n", ja3n), ("ja4", ja4)):
        if values.isna().all():
            continue
        u = Unique(values)
        mu = fingerprint_matches(u.values.tolist(), kind, kb)
        m = {c: _codes(u, mu[c]) for c in MATCH_COLUMNS}
        hit = u.rows(mu["product"] != None)  # noqa: E711 (elementwise)
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


def _codes(u: Unique, per_unique: npt.NDArray[np.object_]) -> Codes:
    """Rows as codes into one value per distinct value, the trailing slot (code -1) ``None``."""
    return Codes(u.codes, np.append(per_unique, np.array([None], dtype=object)))


# --- client baseline --------------------------------------------------------------------------------
def _learned_stacks(b: Baseline) -> pd.DataFrame:
    """The baseline's (client, origin, JA4_ab, JA4_c, count) rows; a baseline saved before ``ja4_stacks``
    gives its JA4s with an unknown origin (taken as the spec's)."""
    st = getattr(b, "ja4_stacks_", None)
    if st is not None and len(st):
        learned: pd.DataFrame = st[["client_id", "origin", "ja4_ab", "ja4_c", "count"]]
        return learned
    fp = b.fingerprints_[b.fingerprints_["kind"] == "ja4"]
    parts = ja4_parts(fp["value"].reset_index(drop=True), ("ab", "c"))
    out = pd.DataFrame({"client_id": fp["client_id"].to_numpy(), "origin": "unknown", "ja4_ab": parts["ab"].to_numpy(),
                        "ja4_c": parts["c"].to_numpy(), "count": fp["count"].to_numpy()})
    return out[out["ja4_ab"].notna().to_numpy()]


def _chain(index: pd.Index, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], nb: int) -> npt.NDArray[np.int64]:
    """Position in ``index`` (learned ``a * nb + b`` keys) of each (a, b) code pair; -1 if either is -1 or unseen."""
    ok = (a >= 0) & (b >= 0)
    at = np.asarray(index.get_indexer(pd.Index(np.where(ok, a * nb + b, -1))), dtype=np.int64)
    out: npt.NDArray[np.int64] = np.where(ok, at, -1)
    return out


class _Stacks:
    """The baseline's learned stacks as the indexes :func:`stack_seen` looks rows up in (built once per baseline).

    Tuples are int64 keys, chained a pair at a time (client+group, then +JA4_ab, then +JA4_c), each step a
    position in the learned keys of the step before: no key outgrows the learned rows times one level."""

    COLUMNS = ("client_id", "group", "ja4_ab", "ja4_c")

    def __init__(self, b: Baseline) -> None:
        learned = _learned_stacks(b)
        self.empty = len(learned) == 0
        lg = learned.assign(group=c_group(learned["origin"]))
        self.levels = {col: pd.Index(pd.unique(lg[col].to_numpy(dtype=object)), dtype=object) for col in self.COLUMNS}
        code = {col: np.asarray(self.levels[col].get_indexer(lg[col].to_numpy(dtype=object)), dtype=np.int64)
                for col in self.COLUMNS}
        n = {col: len(self.levels[col]) for col in self.COLUMNS}
        self.n = n
        self.cg = pd.Index(np.unique(code["client_id"] * n["group"] + code["group"]))
        cg = _chain(self.cg, code["client_id"], code["group"], n["group"])
        self.cga = pd.Index(np.unique(cg * n["ja4_ab"] + code["ja4_ab"]))
        cga = _chain(self.cga, cg, code["ja4_ab"], n["ja4_ab"])
        self.cgac = pd.Index(np.unique(cga * n["ja4_c"] + code["ja4_c"]))
        cgac = _chain(self.cgac, cga, code["ja4_c"], n["ja4_c"])
        # a client's JA4_c varies for one (group, JA4_ab): enough distinct JA4_c, none of them dominant
        per_c = pd.DataFrame({"cga": cga, "cgac": cgac, "count": lg["count"].to_numpy()}).groupby(
            ["cga", "cgac"])["count"].sum()
        per_ab = per_c.groupby(level=0).agg(["size", "sum", "max"])
        vary = per_ab.index[(per_ab["size"] >= VARY_MIN_DISTINCT)
                            & (per_ab["max"] <= VARY_MAX_TOP_SHARE * per_ab["sum"])]
        self.varies = np.zeros(len(self.cga), dtype=bool)
        self.varies[np.asarray(vary, dtype=np.int64)] = True
        # per learned (client, JA4_ab): how many source groups it was learned from, and the first one
        self.ca = pd.Index(np.unique(code["client_id"] * n["ja4_ab"] + code["ja4_ab"]))
        ca = _chain(self.ca, code["client_id"], code["ja4_ab"], n["ja4_ab"])
        per_ca = pd.DataFrame({"ca": ca, "group": code["group"]}).groupby("ca")["group"]
        self.ab_groups = np.zeros(len(self.ca), dtype=np.int64)
        self.ab_group = np.full(len(self.ca), -1, dtype=np.int64)
        counted = per_ca.nunique()
        self.ab_groups[counted.index.to_numpy(dtype=np.int64)] = counted.to_numpy(dtype=np.int64)
        first = per_ca.first()
        self.ab_group[first.index.to_numpy(dtype=np.int64)] = first.to_numpy(dtype=np.int64)

    def codes(self, col: str, values: npt.NDArray[np.object_]) -> npt.NDArray[np.int64]:
        """Each value's code among the learned values of ``col`` (-1: never learned)."""
        return np.asarray(self.levels[col].get_indexer(values), dtype=np.int64)


def _stacks(b: Baseline) -> _Stacks:
    return derived(b, "fingerprint_signals.stacks", ("ja4_stacks_", "fingerprints_"), lambda: _Stacks(b))


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
    if not has.any():
        return seen, how
    learned = _stacks(b)
    if learned.empty:
        return seen, how
    nj, ng = len(cat.cat.categories) + 1, len(g_uniq) + 1
    key = (c.astype(np.int64) * ng + g_codes) * nj + j_codes
    inv, uk = pd.factorize(np.where(has, key, -1))  # hashed, not sorted: a million rows in ~20 ms
    inv, uk = np.asarray(inv, dtype=np.int64), np.asarray(uk, dtype=np.int64)
    live = uk >= 0
    parts = ja4_parts(pd.Series(cat.cat.categories, dtype="string"), ("ab", "c"))
    d_j, d_g, d_c = uk[live] % nj, (uk[live] // nj) % ng, uk[live] // (nj * ng)
    d_client, d_group = np.asarray(clients, dtype=object)[d_c], np.asarray(g_uniq, dtype=object)[d_g]
    d_ab, d_c4 = parts["ab"].to_numpy(dtype=object)[d_j], parts["c"].to_numpy(dtype=object)[d_j]
    k_client, k_group = learned.codes("client_id", d_client), learned.codes("group", d_group)
    k_ab, k_c = learned.codes("ja4_ab", d_ab), learned.codes("ja4_c", d_c4)
    cg = _chain(learned.cg, k_client, k_group, learned.n["group"])
    cga = _chain(learned.cga, cg, k_ab, learned.n["ja4_ab"])
    hit_full = _chain(learned.cgac, cga, k_c, learned.n["ja4_c"]) >= 0
    hit_vary = (cga >= 0) & learned.varies[np.maximum(cga, 0)]
    same_group = cg >= 0
    # JA4_ab learned from another source group: that entry's JA4_c cannot be compared with this one's
    at = _chain(learned.ca, k_client, k_ab, learned.n["ja4_ab"])
    hit_other = (at >= 0) & ((learned.ab_groups[np.maximum(at, 0)] > 1)
                             | (learned.ab_group[np.maximum(at, 0)] != k_group))
    d_seen = np.append(np.asarray(hit_full | hit_vary | hit_other, dtype=bool), False)
    d_how = np.append(np.where(same_group, COMPARED_STACK, COMPARED_AB).astype(np.int8), COMPARED_STACK)
    pos = np.where(live[inv], np.cumsum(live)[inv] - 1, len(d_client))  # rows without a client or JA4: the trailing pad
    return d_seen[pos], d_how[pos]


class _Clients:
    """The baseline's clients and fingerprints as the indexes :func:`baseline_signals` reads (once per baseline)."""

    def __init__(self, b: Baseline) -> None:
        clients = self.clients = pd.Index(b.clients_["client_id"])
        self.conns = b.clients_["connections"].to_numpy()
        self.stab = b.client_stability().set_index("client_id").reindex(clients)["stability"].fillna(0.0).to_numpy()
        # per kind: its rows, its distinct values, and each learned pair as (client position, value position)
        self.pairs: dict[str, tuple[pd.DataFrame, pd.Index, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        for kind in ("ja4", "ja3n"):
            fp = b.fingerprints_[b.fingerprints_["kind"] == kind]
            vals = pd.Index(fp["value"].unique())
            self.pairs[kind] = (fp, vals, np.asarray(clients.get_indexer(fp["client_id"]), dtype=np.int64),
                                np.asarray(vals.get_indexer(fp["value"]), dtype=np.int64))
        prev = b.prevalence()
        p4 = prev[prev["kind"] == "ja4"].set_index("value") if len(prev) else pd.DataFrame(columns=["clients"])
        self.p4_values = pd.Index(p4.index)
        self.p4_clients = np.asarray(p4["clients"].to_numpy(dtype=np.int64)) if len(p4) else None
        vers = b.versions_
        self.floor: npt.NDArray[np.float64] | None = None
        if len(vers):
            floor = pd.to_numeric(vers.groupby("client_id", observed=True)["max_version"].min(), errors="coerce")
            self.floor = np.append(floor.reindex(clients).to_numpy(dtype=np.float64), np.nan)


def baseline_signals(df: pd.DataFrame, b: Baseline, cid: pd.Series, ja4: pd.Series, ja3n: pd.Series,
                      ev: Evidence) -> Any:
    learned = derived(b, "fingerprint_signals.clients", ("clients_", "fingerprints_", "versions_"),
                      lambda: _Clients(b))
    clients = learned.clients
    c = positions(cid, clients)
    known_client = c >= 0
    conns = learned.conns
    stab = learned.stab

    seen: dict[str, npt.NDArray[np.bool_]] = {}
    client_of: dict[str, npt.NDArray[np.int64]] = {}  # each learned pair's client, as a position in clients
    for kind, values in (("ja4", ja4), ("ja3n", ja3n)):
        fp, vals, pairs_c, pairs_v = learned.pairs[kind]
        v = positions(values, vals)
        client_of[kind] = pairs_c
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
    pos = positions(ja4, learned.p4_values)
    others = np.where(pos >= 0, learned.p4_clients[np.maximum(pos, 0)] if learned.p4_clients is not None else 0, 0)
    weight = (30.0 + 30.0 * stab[np.maximum(c, 0)]) * np.where(others > 0, 0.6, 1.0)
    fp = learned.pairs["ja4"][0]

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
    fl = learned.floor
    if fl is not None:
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


def _known_stacks(b: Baseline) -> pd.Index:
    learned = b.fingerprints_.loc[b.fingerprints_["kind"] == "ja4", "value"].drop_duplicates().reset_index(drop=True)
    known: pd.Index = pd.Index(ja4_parts(learned, ("stack",))["stack"].dropna().unique())
    return known


def convergence_signal(df: pd.DataFrame, b: Baseline, cid: pd.Series, ja4: pd.Series, ev: Evidence, window: str,
                 min_clients: int) -> None:
    """Many clients on one fingerprint the population never used, inside one time window."""
    if "ts" not in df.columns or ja4.isna().all():
        return
    # compared as stacks: clients dialling IP literals (no SNI) at once are not a new hello
    known = derived(b, "fingerprint_signals.known_stacks", ("fingerprints_",), lambda: _known_stacks(b))
    cat = ja4 if isinstance(ja4.dtype, pd.CategoricalDtype) else ja4.astype("string").astype("category")
    codes = np.asarray(cat.cat.codes, dtype=np.int64)
    cat_stack = ja4_parts(pd.Series(cat.cat.categories, dtype="string"), ("stack",))["stack"]
    cat_known = np.append(np.asarray(known.get_indexer(pd.Index(cat_stack))) >= 0, False)  # code -1: the trailing False
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
