"""Proxy hosts: an interceptor's upstream side, found by pairing its connections with its clients'.

An interception proxy re-originates every connection it intercepts: a known client opens a connection
to a name, and a moment later the proxy opens its own to the same name (to the server's address for an
inline transparent box, from its own address in every case). Where the sensor sees both legs, the
proxy is a source the baseline never saw whose connections each follow a known client's connection
with the same SNI. Legs are paired with two as-of joins by SNI (no Python per row): a known client's
connection at most :data:`PAIR_WINDOW` *before* each unseen source's connection (the proxy's pairing)
and one at most as long *after* it (chance measured: chance is symmetric in time, a proxy's upstream leg
always comes after).

A source is a proxy host when, at one of the widths :data:`WIDTHS` (5 ms .. 2 s), at least
:data:`MIN_PAIRED` of its connections, to at least :data:`MIN_NAMES` names, are paired, at least
:data:`MIN_FRACTION` of all its connections, and that many pairs are unlikely by chance
(:data:`MIN_SURPRISE`, less ``ln(len(WIDTHS))`` for the widths tried): chance at a width is the larger
of the rate at which known clients open those names (modelled) and the share of its connections a known
client's followed within it (measured). On dense traffic (the inline corpus: 5 names, ~8 connections/s)
89% of connections pair by chance within 2 s but 0.5% within 5 ms, where the interceptors' 1-42 ms lags
already sit; with each known corpus client in turn left out of the baseline, the largest surprise was 0.4
nats against the 6.9 required. A pair is a relay (a NAT, a TCP load balancer, a CONNECT tunnel that does
not terminate TLS), not counted, only when the hello *and* the server side are the same
(:func:`same_conversation`): a proxy that copies its client's hello answers the client itself.

Both legs are flagged ``proxied_for``: the proxy host's rows with the clients it speaks for, and the
known clients' legs it re-originated (each one alone could be chance, so at a weight that makes it
``suspicious``; with the server-side evidence on the same leg it adds up).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import positions, raw_column, texts_at
from tlsdetect.detect.evidence import Evidence, top_list

__all__ = [
    "MIN_FRACTION",
    "MIN_NAMES",
    "MIN_PAIRED",
    "MIN_SURPRISE",
    "PAIR_WINDOW",
    "SERVER_SIDE",
    "WIDTHS",
    "SameHello",
    "pair_legs",
    "proxy_host_signal",
    "proxy_sources",
    "same_conversation",
    "same_hello",
]

#: How long after a client's connection the proxy's own may start, tried at each width: mitmproxy 11 on
#: loopback took 23-266 ms (``pcaps/intercepted.pcapng``), the inline corpus's three interceptors 1-5 ms; an
#: appliance that resolves the name and opens TCP upstream first needs an upstream round trip or two more.
#: Chance pairing grows with the width, a proxy's does not: each source is judged at its most surprising
#: width, the surprise less ``ln(len(WIDTHS))`` (Bonferroni: that many tests were tried).
WIDTHS = tuple(pd.Timedelta(w) for w in ("5ms", "20ms", "100ms", "500ms", "2s"))
PAIR_WINDOW = WIDTHS[-1]
#: The server side a relay forwards unchanged: two legs with the same hello and these equal (where both have
#: them) are one conversation seen twice. ``server_flight_bytes`` on one leg only also differs: a relay
#: forwards the server's flight to both sides, a proxy that copied the hello upstream cuts that handshake
#: short (it lacks the client's keys) and answers the client with its own flight.
SERVER_SIDE = ("ja3s_full", "sh_cipher", "server_flight_bytes", "server_issuer")
MIN_PAIRED = 3
MIN_NAMES = 2
MIN_FRACTION = 0.5
#: How unlikely the source's pairing must be under chance: at least ``ln(1000)`` nats, a tail probability under
#: 1e-3 (the Chernoff bound ``exp(-n KL(paired/n || p0))`` of the binomial tail, so the true one is smaller).
MIN_SURPRISE = float(np.log(1000.0))
#: Pairing strong enough for ``intercepted`` on its own (see :func:`proxy_sources`).
STRONG_PAIRED, STRONG_NAMES, STRONG_FRACTION = 5, 3, 0.8
HOST_WEIGHT, STRONG_HOST_WEIGHT, CLIENT_LEG_WEIGHT = 50.0, 75.0, 45.0


#: Whether rows ``a`` and ``b`` (positions; -1: none) sent the same hello bytes.
SameHello = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[np.bool_]]


def same_hello(df: pd.DataFrame) -> SameHello:
    """:data:`SameHello` over ``df``: ``ja3_full`` (wire order) and ``ja4_o`` both present and equal, read at
    the rows asked about only (a few pairs, never the million rows)."""
    cols = [raw_column(df, c) for c in ("ja3_full", "ja4_o")]

    def same(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        out = (a >= 0) & (b >= 0)
        ia, ib = a[out], b[out]
        eq = np.ones(len(ia), dtype=bool)
        for col in cols:
            va, vb = _sides(col, ia, ib)
            eq &= (va.notna() & vb.notna() & (va.astype(object) == vb.astype(object))).to_numpy(dtype=bool)
        out[out] = eq
        return out

    return same


def same_conversation(df: pd.DataFrame) -> SameHello:
    """:data:`SameHello` over ``df`` that also asks for the same server side (:data:`SERVER_SIDE`): a relay's
    two legs; a proxy that copies its client's hello differs here (its own answer to the client)."""
    hello = same_hello(df)
    cols = [(c, raw_column(df, c)) for c in SERVER_SIDE]

    def same(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        out = hello(a, b)
        ia, ib = a[out], b[out]
        differ = np.zeros(len(ia), dtype=bool)
        for name, col in cols:
            va, vb = _sides(col, ia, ib, as_text=True)
            has_a, has_b = va.notna().to_numpy(dtype=bool), vb.notna().to_numpy(dtype=bool)
            differ |= has_a & has_b & (va != vb).fillna(False).to_numpy(dtype=bool)
            if name == "server_flight_bytes":
                differ |= has_a != has_b
        out[out] = ~differ
        return out

    return same


def _sides(col: pd.Series, ia: npt.NDArray[np.int64], ib: npt.NDArray[np.int64],
           as_text: bool = False) -> tuple[pd.Series, pd.Series]:
    """``col`` at rows ``ia`` and at rows ``ib`` (as ``string`` if ``as_text``), each indexed from 0: one take
    for both."""
    both = col.iloc[np.concatenate([ia, ib])]
    if as_text:
        both = both.astype("string")
    both = both.reset_index(drop=True)
    return both.iloc[: len(ia)], both.iloc[len(ia):].reset_index(drop=True)


def pair_legs(ts: npt.NDArray[np.int64], sni: npt.NDArray[np.int64], same: SameHello,
              left: npt.NDArray[np.int64], right: npt.NDArray[np.int64],
              window: pd.Timedelta = PAIR_WINDOW) -> pd.DataFrame:
    """Pair each ``left`` row (an unseen source's connection) with ``right`` rows (known clients').

    ``ts`` are nanoseconds, ``sni`` integer codes (-1: missing), ``same`` tells relays
    (:func:`same_conversation`), ``left``/``right`` row positions. Returns one row per ``left`` row with a
    name: ``row``; ``partner``, the latest right row with the same SNI at most ``window`` before (-1: none);
    ``lag_ns``; ``relay``, the partner is the same conversation (not a pair); ``reversed``, a right row with
    the same SNI, not the same conversation, follows within ``window`` (chance measured, held to the same
    rule) and ``next_lag_ns`` how long after (-1: none); ``rate_hz``, how often known clients open this name
    in the table (chance modelled: a row pairs by chance within width ``w`` with ``1 - exp(-rate_hz w)``).
    """
    left = left[sni[left] >= 0]
    named = np.zeros(int(sni.max(initial=-1)) + 2, dtype=bool)  # by code; -1 (no name) takes the last, False
    named[sni[left]] = True
    right = right[named[sni[right]]]
    tol = int(window.value)
    # chance: known clients open each name at its own rate; a row pairs by chance with 1 - exp(-rate * width)
    span = max(int(ts[np.concatenate([left, right])].max() - ts[np.concatenate([left, right])].min()), tol) \
        if len(left) else tol
    per_name = np.bincount(sni[right], minlength=int(sni.max(initial=0)) + 1)
    # only a right row within the window of some left row can be matched: the joins see those alone
    right = right[_near(ts[right], ts[left], tol)]
    lf = pd.DataFrame({"ts": ts[left], "sni": sni[left], "row": left}).sort_values("ts", kind="stable")
    rf = pd.DataFrame({"ts": ts[right], "sni": sni[right], "partner": right}).sort_values("ts", kind="stable")
    before = pd.merge_asof(lf, rf, on="ts", by="sni", direction="backward", tolerance=tol, allow_exact_matches=False)
    after = pd.merge_asof(lf, rf.rename(columns={"partner": "next"}), on="ts", by="sni", direction="forward",
                          tolerance=tol, allow_exact_matches=False)
    partner = before["partner"].fillna(-1).to_numpy(dtype=np.int64)
    has = partner >= 0
    row = before["row"].to_numpy(dtype=np.int64)
    lag = np.where(has, ts[row] - ts[np.maximum(partner, 0)], 0)
    rate_hz = per_name[sni[row]] * 1e9 / span
    relay = same(row, partner)
    nxt = after["next"].fillna(-1).to_numpy(dtype=np.int64)
    rev = (nxt >= 0) & ~same(row, nxt)
    return pd.DataFrame({"row": row, "partner": np.where(relay, -1, partner), "lag_ns": lag, "relay": relay,
                         "reversed": rev, "next_lag_ns": np.where(rev, ts[np.maximum(nxt, 0)] - ts[row], -1),
                         "rate_hz": rate_hz})


def _near(t: npt.NDArray[np.int64], marks: npt.NDArray[np.int64], tol: int) -> npt.NDArray[np.bool_]:
    """Whether each time ``t`` is at most ``tol`` from one of ``marks`` (a sorted search, no pairwise table)."""
    if len(marks) == 0:
        return np.zeros(len(t), dtype=bool)
    m = np.sort(marks)
    j = np.searchsorted(m, t)
    after = m[np.minimum(j, len(m) - 1)] - t  # the first mark at or after t (or the last one)
    before = t - m[np.maximum(j - 1, 0)]  # the last mark before t (or the first one)
    out: npt.NDArray[np.bool_] = (np.abs(after) <= tol) | (np.abs(before) <= tol)
    return out


def proxy_sources(pairs: pd.DataFrame, source: npt.NDArray[np.object_], sni: npt.NDArray[np.int64],
                  client: npt.NDArray[np.object_], widths: tuple[pd.Timedelta, ...] = WIDTHS) -> pd.DataFrame:
    """Per unseen source, at its most surprising width (``window_ns``, one of ``widths``): connections,
    paired (a known client's connection to the same name at most that long before), ordered (paired and not
    followed), chance (followed, not paired), names paired, median lag, relays, chance rate and surprise
    (Bonferroni-corrected over the widths), the clients it speaks for, whether it is a proxy host and how
    strongly (``weight``)."""
    rows = pairs["row"].to_numpy()
    code, srcs = pd.factorize(pd.Series(source[rows], dtype=object), sort=True)
    code = np.asarray(code, dtype=np.int64)
    k = len(srcs)
    width_ns = np.array([w.value for w in widths], dtype=np.int64)
    has = pairs["partner"].to_numpy() >= 0
    lag = pairs["lag_ns"].to_numpy()
    nxt = pairs["next_lag_ns"].to_numpy()
    fwd = has[:, None] & (lag[:, None] <= width_ns)  # rows x widths
    back = (nxt[:, None] >= 0) & (nxt[:, None] <= width_ns)
    model = 1.0 - np.exp(-pairs["rate_hz"].to_numpy(dtype=np.float64)[:, None] * width_ns / 1e9)

    def per_source(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        cols = [np.bincount(code, weights=m[:, j], minlength=k) for j in range(len(width_ns))]
        return np.stack(cols, axis=1) if k else np.zeros((0, len(width_ns)))

    n = np.bincount(code, minlength=k).astype(np.float64)[:, None]
    share = per_source(fwd.astype(np.float64)) / np.maximum(n, 1)
    # chance at each width: the larger of the modelled rate and the measured one (the share of its rows a known
    # client's connection to the same name followed within that width)
    p0 = np.clip(np.maximum(per_source(model), per_source(back.astype(np.float64))) / np.maximum(n, 1),
                 1e-9, 1 - 1e-9)
    surprise = np.maximum(n * _kl(share, p0) - np.log(len(width_ns)), 0.0)  # Bonferroni over the widths
    names = np.stack([_distinct(code[fwd[:, j]], sni[rows[fwd[:, j]]], k) for j in range(len(width_ns))], axis=1) \
        if k else np.zeros((0, len(width_ns)))
    ok = ((share * n >= MIN_PAIRED) & (names >= MIN_NAMES) & (np.round(share, 3) >= MIN_FRACTION)
          & (surprise >= MIN_SURPRISE))
    # a proxy host at any width; its legs are those of the widest such width (a proxy's lags spread, chance
    # stays low well past the tightest); any other source at its most surprising width (equals: the widest)
    rank = np.where(ok, 2.0 * np.max(surprise, initial=0.0) + 1 + np.arange(len(width_ns)), surprise)
    best = len(width_ns) - 1 - np.argmax(rank[:, ::-1], axis=1) if k else np.zeros(0, dtype=np.int64)
    at = np.arange(k)
    window = width_ns[best]
    p = pairs.assign(source=np.asarray(srcs, dtype=object)[code])
    paired = has & (lag <= window[code])
    reversed_ = back[np.arange(len(rows)), best[code]] if len(rows) else np.zeros(0, dtype=bool)
    p["paired"] = paired
    p["ordered"] = paired & ~reversed_
    p["chance"] = ~paired & reversed_
    p["name"] = np.where(paired, sni[rows], -1)
    p["lag_ms"] = np.where(paired, lag / 1e6, np.nan)
    g = p.groupby("source", sort=True)
    out = pd.DataFrame({
        "connections": g.size(), "paired": g["paired"].sum(), "ordered": g["ordered"].sum(),
        "chance": g["chance"].sum(), "relays": g["relay"].sum(),
        "names": p[paired].groupby("source")["name"].nunique(), "lag_ms": g["lag_ms"].median(),
    }).fillna({"names": 0}).astype({"names": np.int64})
    out["fraction"] = np.round(out["paired"] / out["connections"], 3)
    out["window_ns"] = window
    out["chance_rate"] = np.round(p0[at, best], 3)
    out["surprise"] = np.round(surprise[at, best], 2)
    out["proxy"] = ok[at, best]
    strong = ((out["paired"] >= STRONG_PAIRED) & (out["names"] >= STRONG_NAMES)
              & (out["fraction"] >= STRONG_FRACTION))
    out["weight"] = np.where(out["proxy"], np.where(strong, STRONG_HOST_WEIGHT, HOST_WEIGHT), 0.0)
    spoken = p[paired].assign(client=client[p.loc[paired, "partner"].to_numpy()])
    counts = spoken[spoken["source"].isin(out.index[out["proxy"]])].groupby(["source", "client"]).size()
    tops = top_list(counts.rename("count").reset_index(), "source", "client", "count")  # proxy hosts only
    out["clients"] = [tops.get(str(s)) for s in out.index]  # one per source, not per row
    out["speaks_for"] = spoken.groupby("source")["client"].nunique().reindex(out.index).fillna(0).astype(np.int64)
    return out


def _distinct(group: npt.NDArray[np.int64], value: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float64]:
    """How many distinct ``value`` each of ``k`` groups has."""
    pairs = np.unique(np.stack([group, value], axis=1), axis=0) if len(group) else np.zeros((0, 2), np.int64)
    return np.bincount(pairs[:, 0], minlength=k).astype(np.float64)


def _kl(q: npt.NDArray[np.float64], p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p), in nats; 0 where q <= p."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(q > 0, q * np.log(q / p), 0.0)
        b = np.where(q < 1, (1 - q) * np.log((1 - q) / (1 - p)), 0.0)
    out: npt.NDArray[np.float64] = np.where(q > p, a + b, 0.0)
    return out


def proxy_host_signal(df: pd.DataFrame, b: Baseline, cid: pd.Series, ev: Evidence,
                      window: pd.Timedelta = PAIR_WINDOW) -> None:
    """``proxied_for`` on a proxy host's rows and on the known clients' legs it re-originated."""
    if "ts" not in df.columns or "sni" not in df.columns:
        return
    c = positions(cid, pd.Index(b.clients_["client_id"]))
    maybe = (c < 0) & cid.notna().to_numpy()  # sources the baseline never saw: most tables have none
    if np.count_nonzero(maybe) < MIN_PAIRED:
        return
    ts_col = pd.to_datetime(df["ts"], utc=True).reset_index(drop=True)
    has = ts_col.notna().to_numpy() & raw_column(df, "sni").notna().to_numpy()
    unseen = np.flatnonzero(has & maybe)
    known = np.flatnonzero(has & (c >= 0))
    if len(unseen) < MIN_PAIRED or len(known) == 0:
        return
    ts = ts_col.astype("datetime64[ns, UTC]").dt.tz_convert(None).to_numpy().view(np.int64)
    sni = np.asarray(pd.factorize(raw_column(df, "sni"))[0], dtype=np.int64)
    pairs = pair_legs(ts, sni, same_conversation(df), unseen, known, window)
    ids = _objects(cid, np.concatenate([pairs["row"].to_numpy(), pairs["partner"].to_numpy()]))
    hosts = proxy_sources(pairs, ids, sni, ids, (*(w for w in WIDTHS if w < window), window))
    hosts = hosts[hosts["proxy"]]
    if len(hosts) == 0:
        return
    host_of = positions(cid, pd.Index(hosts.index))
    h_rows = np.zeros(len(df), dtype=bool)
    h_rows[unseen] = host_of[unseen] >= 0
    weight = np.zeros(len(df))
    weight[h_rows] = hosts["weight"].to_numpy()[host_of[h_rows]]
    ms = pd.Series(hosts["window_ns"].to_numpy() / 1e6).map("{:g}".format)

    def host_detail(i: npt.NDArray[np.int64]) -> pd.Series:
        h = hosts.iloc[host_of[i]]
        return ("source " + texts_at(cid, i) + " is not in the baseline; " + _s(h["paired"]) + " of its "
                + _s(h["connections"]) + " connections, to " + _s(h["names"]) + " names, each started within "
                + _s(ms.iloc[host_of[i]]) + " ms"
                + " after a known client's connection to the same name (median " + _s(h["lag_ms"].round(1))
                + " ms later; " + _s(h["chance"]) + " only the other way round; chance " + _s(h["chance_rate"])
                + " a connection): it re-originates "
                + _s(h["speaks_for"]) + " known client(s)' connections, an interceptor's upstream side")

    ev.add("proxied_for", h_rows, host_detail, expected=lambda i: hosts["clients"].to_numpy()[host_of[i]],
           observed=lambda i: hosts["fraction"].to_numpy()[host_of[i]], weight=weight)

    host = host_of[pairs["row"].to_numpy()]
    within = pairs["lag_ns"].to_numpy() <= hosts["window_ns"].to_numpy()[np.maximum(host, 0)]
    legs = pairs[(pairs["partner"].to_numpy() >= 0) & (host >= 0) & within]
    legs = legs.drop_duplicates("partner")
    leg_row = legs["partner"].to_numpy()
    leg_mask = np.zeros(len(df), dtype=bool)
    leg_mask[leg_row] = True
    proxy_of = np.full(len(df), None, dtype=object)
    proxy_of[leg_row] = ids[legs["row"].to_numpy()]
    lag_ms = np.zeros(len(df))
    lag_ms[leg_row] = np.round(legs["lag_ns"].to_numpy() / 1e6, 1)
    ev.add("proxied_for", leg_mask,
           lambda i: ("proxy host " + texts_at(proxy_of, i) + " (not in the baseline) opened its own connection to "
                      + texts_at(raw_column(df, "sni"), i) + " " + texts_at(lag_ms, i)
                      + " ms after this one: this connection was answered by an interceptor, not the server"),
           expected="the server answers the client itself", observed=proxy_of, weight=CLIENT_LEG_WEIGHT)


def _objects(cid: pd.Series, at: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """``cid.astype(object)`` (missing: NaN) at the positions ``at`` (-1: none), None elsewhere: the pairs'
    rows are a few of the table's."""
    out = np.empty(len(cid), dtype=object)  # an object array starts as None everywhere
    at = np.unique(at[at >= 0])
    out[at] = cid.iloc[at].astype(object).to_numpy()
    return out


def _s(values: pd.Series) -> pd.Series:
    return pd.Series(values.to_numpy(dtype=object), dtype=object).map(str)
