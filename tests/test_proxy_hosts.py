"""Proxy hosts: pairing an unseen source's connections with known clients' by SNI and time."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsdetect.detect import proxy_hosts as ph
from tlsdetect.detect.baseline import Baseline, client_ids
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.scoring import score
from tlsdetect.readers.inputs import Inputs

from .conftest import CAPTURES_MANIFEST, PROJECT_PCAPS, ROOT
from .detect_data import captured, codes, with_hello_of

MS = 1_000_000


def _ns(seconds: list[float]) -> np.ndarray:
    return (np.asarray(seconds) * 1e9).astype(np.int64)


def _hellos(kinds: list[int]) -> ph.SameHello:
    """:func:`ph.same_hello` over rows whose hello is ``kinds[row]`` (-1: no hello seen)."""
    text = pd.array([None if k < 0 else f"771,{k},0-10,29,0" for k in kinds], dtype="string")
    return ph.same_hello(pd.DataFrame({"ja3_full": text, "ja4_o": text}))


# --- pair_legs ---------------------------------------------------------------------------------------
def test_pair_legs_pairs_by_name_within_the_window_and_counts_the_reverse_as_chance() -> None:
    # rows 0-3 known clients, 4-7 the unseen source
    ts = _ns([10.0, 20.0, 30.0, 40.0, 10.05, 22.5, 30.1, 39.0])
    sni = np.array([0, 1, 2, 3, 0, 1, 5, 3])
    p = ph.pair_legs(ts, sni, _hellos([0, 0, 0, 0, 9, 9, 9, 9]), np.arange(4, 8), np.arange(4)).set_index("row")
    assert p.loc[4, "partner"] == 0
    assert p.loc[4, "lag_ns"] == 50 * MS
    assert p.loc[5, "partner"] == -1  # 2.5 s later: outside the 2 s window
    assert p.loc[6, "partner"] == -1  # another name
    assert p.loc[7, "partner"] == -1
    assert p.loc[7, "reversed"]
    assert not p.loc[4, "reversed"]
    assert not p["relay"].any()


def test_pair_legs_a_relayed_hello_is_not_a_pair() -> None:
    ts = _ns([1.0, 1.001, 5.0, 5.3])
    sni = np.array([0, 0, 1, 1])
    # row 1 forwards row 0's exact hello (a NAT); row 3 sends its own
    p = ph.pair_legs(ts, sni, _hellos([7, 7, 3, 4]), np.array([1, 3]), np.array([0, 2])).set_index("row")
    assert p.loc[1, "relay"]
    assert p.loc[1, "partner"] == -1
    assert p.loc[3, "partner"] == 2
    assert not p.loc[3, "relay"]
    # a source that logs no hello lists (no ja3_full): never a relay, the pair counts
    p = ph.pair_legs(ts, sni, _hellos([-1, -1, -1, -1]), np.array([1, 3]), np.array([0, 2])).set_index("row")
    assert list(p["partner"]) == [0, 2]
    assert not p["relay"].any()


def test_pair_legs_without_a_name_pairs_nothing() -> None:
    p = ph.pair_legs(_ns([1.0, 1.1]), np.array([-1, -1]), _hellos([0, 1]), np.array([1]), np.array([0]))
    assert len(p) == 0



@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-1, 3), st.booleans()), min_size=1, max_size=40,
                unique_by=lambda r: r[0]))
def test_pair_legs_equals_a_plain_search(rows: list[tuple[int, int, bool]]) -> None:
    """Partner, lag, reversed and rate of each left row as a loop over every right row finds them (distinct
    times in 0.1 s steps, a 2 s window): the joins see only right rows near some left row, and nothing
    changes."""
    ts = np.array([r[0] for r in rows], dtype=np.int64) * 100 * MS
    sni = np.array([r[1] for r in rows], dtype=np.int64)
    left = np.array([i for i, r in enumerate(rows) if r[2]], dtype=np.int64)
    right = np.array([i for i, r in enumerate(rows) if not r[2]], dtype=np.int64)
    got = ph.pair_legs(ts, sni, _hellos([-1] * len(rows)), left, right).set_index("row")
    named = [int(i) for i in left if sni[i] >= 0]
    assert sorted(got.index) == sorted(named)
    tol = ph.PAIR_WINDOW.value
    cands = [int(j) for j in right if sni[j] >= 0 and sni[j] in set(sni[named].tolist())]
    span = max(int(ts[named + cands].max() - ts[named + cands].min()), tol) if named else tol
    for i in named:
        same = [j for j in cands if sni[j] == sni[i]]
        before = [j for j in same if 0 < ts[i] - ts[j] <= tol]
        after = [j for j in same if 0 < ts[j] - ts[i] <= tol]
        partner = max(before, key=lambda j: ts[j]) if before else -1
        nxt = min(after, key=lambda j: ts[j]) if after else -1
        assert got.loc[i, "partner"] == partner
        assert got.loc[i, "lag_ns"] == (ts[i] - ts[partner] if partner >= 0 else 0)
        assert got.loc[i, "reversed"] == (nxt >= 0)
        assert got.loc[i, "next_lag_ns"] == (ts[nxt] - ts[i] if nxt >= 0 else -1)
        assert got.loc[i, "rate_hz"] == pytest.approx(len(same) * 1e9 / span)

# --- proxy_sources -----------------------------------------------------------------------------------
def _rate(chance: float) -> float:
    """The rate (Hz) at which a known client opening a name pairs a row by ``chance`` within 100 ms."""
    return float(-np.log(1 - chance) / 0.1)


def _pairs(source_rows: dict[str, list[tuple[int, bool]]],
           chance: float = 0.01) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Pairs of unseen rows, 40 ms after their partner: per source a list of (name, paired); known client rows
    are 'client-<name % 3>'; ``chance``: the modelled chance that a known client opened the row's name in the
    100 ms width (the tightest that holds 40 ms)."""
    rows: list[int] = []
    partners: list[int] = []
    names: list[int] = []
    srcs: list[str] = []
    for s, items in source_rows.items():
        for name, paired in items:
            rows.append(len(srcs))
            srcs.append(s)
            names.append(name)
            partners.append(name if paired else -1)
    n = len(srcs)
    ids = np.array(srcs + [f"client-{k % 3}" for k in range(100)], dtype=object)
    sni = np.array(names + list(range(100)))
    pairs = pd.DataFrame({"row": rows, "partner": [n + p if p >= 0 else -1 for p in partners],
                          "lag_ns": 40 * MS, "relay": False, "reversed": False, "next_lag_ns": -1,
                          "rate_hz": _rate(chance)})
    return pairs, ids, sni


def test_proxy_sources_thresholds_and_weights() -> None:
    pairs, ids, sni = _pairs({
        "strong": [(k, True) for k in range(6)],  # 6 of 6 paired, 6 names
        "weak": [(0, True), (1, True), (1, True), (2, False), (3, False), (4, False)],  # 3 of 6, 2 names
        "one-name": [(8, True)] * 5,  # a single (CDN) name: not enough names
        "rare": [(k, True) for k in range(3)] + [(k, False) for k in range(10, 17)],  # 3 of 10
    })
    out = ph.proxy_sources(pairs, ids, sni, ids)
    assert out.loc["strong", "proxy"]
    assert out.loc["strong", "weight"] == ph.STRONG_HOST_WEIGHT
    assert out.loc["strong", "fraction"] == 1.0
    assert out.loc["strong", "speaks_for"] == 3
    assert out.loc["weak", "proxy"]
    assert out.loc["weak", "weight"] == ph.HOST_WEIGHT
    assert out.loc["weak", "paired"] == 3
    assert out.loc["weak", "names"] == 2
    assert not out.loc["one-name", "proxy"]
    assert out.loc["one-name", "weight"] == 0
    assert not out.loc["rare", "proxy"]
    assert out.loc["rare", "fraction"] == 0.3
    assert str(out.loc["strong", "clients"]).startswith("client-")
    # a proxy host at every width from 100 ms (the 40 ms lags) up, reported at the widest, 2 s: chance there is
    # 1 - 0.99^20 (20 times the 100 ms width), less ln(5) for the five widths tried
    assert out.loc["strong", "window_ns"] == 2000 * MS
    assert out.loc["strong", "surprise"] == pytest.approx(-6 * np.log(1 - 0.99**20) - np.log(5), abs=0.01)
    assert out.loc["rare", "window_ns"] == 100 * MS  # not a proxy: its most surprising width


def test_proxy_sources_on_names_everyone_opens_all_the_time_nothing_is_a_proxy() -> None:
    # the strong source's pattern, but each name is opened by a known client in 60% of any 100 ms window
    pairs, ids, sni = _pairs({"strong": [(k, True) for k in range(6)]}, chance=0.6)
    out = ph.proxy_sources(pairs, ids, sni, ids)
    assert out.loc["strong", "surprise"] == pytest.approx(6 * np.log(1 / 0.6) - np.log(5), abs=0.01)
    assert out["surprise"].max() < ph.MIN_SURPRISE
    assert not out.loc["strong", "proxy"]
    many, ids, sni = _pairs({"many": [(k % 20, True) for k in range(20)]}, chance=0.6)  # 20 of 20: no longer chance
    assert ph.proxy_sources(many, ids, sni, ids).loc["many", "proxy"]


def test_proxy_sources_chance_in_both_directions_is_not_a_proxy() -> None:
    pairs, ids, sni = _pairs({"busy": [(k % 4, k % 2 == 0) for k in range(8)]})  # 4 of 8 paired, 2 names
    pairs["reversed"] = ~(pairs["partner"] >= 0)  # the other 4: a known client came 40 ms *after*
    pairs["next_lag_ns"] = np.where(pairs["reversed"], 40 * MS, -1)
    out = ph.proxy_sources(pairs, ids, sni, ids)
    assert out.loc["busy", "paired"] == 4
    assert out.loc["busy", "chance"] == 4
    assert out.loc["busy", "chance_rate"] == 0.5
    assert out.loc["busy", "surprise"] == 0
    assert not out.loc["busy", "proxy"]
    pairs["reversed"] = False
    pairs["next_lag_ns"] = -1
    assert ph.proxy_sources(pairs, ids, sni, ids).loc["busy", "proxy"]  # same pairs, no reverse: it is one


# --- on the project's mitmproxy capture ---------------------------------------------------------------
@cache
def _intercepted() -> tuple[pd.DataFrame, set[int]]:
    """``pcaps/intercepted.pcapng`` read by tlsdetect, and mitmproxy's upstream legs' client ports."""
    df = Inputs([str(PROJECT_PCAPS / "intercepted.pcapng")]).read_all()
    conns = json.loads(CAPTURES_MANIFEST.read_text())["captures"]["intercepted.pcapng"]["connections"]
    return df, {c["client_port"] for c in conns if c["scenario"] == "mitmproxy-upstream-leg"}


def _proxy_at(address: str, *, inline: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """The capture with mitmproxy's upstream legs from ``address`` (on loopback both legs share 127.0.0.1, as
    a sensor on both sides of a middlebox would not); ``inline``: the upstream legs go to the address and
    port the client asked for, as a transparent proxy's do. Returns the table and the upstream rows."""
    df, ports = _intercepted()
    out = df.copy()
    up = out["client_port"].isin(ports).to_numpy()
    ip = out["client_ip"].to_numpy(dtype=object, copy=True)
    ip[up] = address
    out["client_ip"] = pd.array(ip, dtype="string")
    if inline:
        port = out["server_port"].to_numpy(dtype=object, copy=True)
        port[up] = out.loc[~up, "server_port"].mode().iloc[0]
        out["server_port"] = pd.array(port, dtype="Int32")
    return out, np.flatnonzero(up)


@pytest.fixture(scope="module")
def sample() -> Baseline:
    return Baseline.load(ROOT / "baselines" / "sample")


@pytest.mark.parametrize("inline", [False, True])
def test_mitmproxy_upstream_legs_are_a_proxy_host(sample: Baseline, inline: bool) -> None:
    df, up = _proxy_at("10.9.9.9", inline=inline)
    assert len(up) == 6
    out = score(df, sample)
    for r in up:
        reasons = [x for x in out.iloc[r]["reasons"] if x["code"] == "proxied_for"]
        assert len(reasons) == 1, out.iloc[r]["reasons"]
        assert reasons[0]["expected"] == "127.0.0.1 (6)"
        assert reasons[0]["observed"] == "1"
        assert "6 of its 6 connections, to 6 names" in reasons[0]["detail"]
        assert out.iloc[r]["verdict"] == "intercepted"
    # the client legs mitmproxy re-originated: flagged too, naming the proxy host
    legs = [r for r in range(len(out)) if r not in set(up) and "proxied_for" in codes(out.iloc[r])]
    assert len(legs) == 6
    leg = next(x for x in out.iloc[legs[0]]["reasons"] if x["code"] == "proxied_for")
    assert leg["observed"] == "10.9.9.9"
    assert " ms after this one" in leg["detail"]


def test_without_the_proxy_host_nothing_is_paired(sample: Baseline) -> None:
    df, _ = _intercepted()  # both legs from 127.0.0.1, a known client: no unseen source
    assert not any("proxied_for" in codes(r) for _, r in score(df, sample).iterrows())


def test_a_window_shorter_than_the_lag_pairs_nothing(sample: Baseline) -> None:
    df, up = _proxy_at("10.9.9.9")
    ev = Evidence(len(df))
    cid = client_ids(df, sample.client_key).astype("category")
    ph.proxy_host_signal(df, sample, cid, ev, window=pd.Timedelta("10ms"))  # mitmproxy took 23-266 ms
    assert not ev.parts
    ph.proxy_host_signal(df, sample, cid, ev)
    assert set(ev.parts[0]["row"]) == set(up)


# --- false positives: a second device, a NAT, a busy shared name ---------------------------------------
def _clean_population(n: int, clients: int, names: int, seconds: float, seed: int) -> pd.DataFrame:
    """``n`` connections of ``clients`` addresses with the project's real hellos, to ``names`` server names
    (a few popular, most rare), at random times over ``seconds``: traffic where any pairing is chance."""
    rng = np.random.default_rng(seed)
    base = captured()
    base = base[base["peer_subject"].isna().to_numpy()]  # a client certificate names a client wherever it is
    out = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    who = rng.integers(0, clients, n)
    out["client_ip"] = pd.array([f"10.1.{k // 250}.{k % 250 + 1}" for k in who], dtype="string")
    popularity = 1.0 / (1.0 + np.arange(names))
    name = rng.choice(names, size=n, p=popularity / popularity.sum())
    out["sni"] = pd.array([f"site{k}.example" for k in name], dtype="string")
    t0 = pd.Timestamp("2026-11-01", tz="UTC")
    out["ts"] = (t0 + pd.to_timedelta(np.sort(rng.uniform(0, seconds, n)), unit="s")).astype("datetime64[ns, UTC]")
    return out


def test_unseen_sources_in_clean_busy_traffic_are_not_proxy_hosts() -> None:
    # 30k connections in an hour (8/s) to 50 names: the top name is opened every ~0.5 s, so chance pairs abound
    df = _clean_population(30_000, 600, 50, 3600, seed=3)
    unseen = {f"10.1.{k // 250}.{k % 250 + 1}" for k in range(0, 600, 20)}  # 30 addresses (second devices, NAT)
    b = Baseline(model=False).fit(df[~df["client_ip"].isin(unseen)])
    ev = Evidence(len(df))
    ph.proxy_host_signal(df, b, client_ids(df).astype("category"), ev)
    assert not ev.parts
    # and the chance pairing this traffic has is real: the rule, not the data, keeps them apart
    ts = df["ts"].dt.tz_convert(None).to_numpy().view(np.int64)
    sni = np.asarray(pd.factorize(df["sni"])[0], dtype=np.int64)
    is_unseen = df["client_ip"].isin(unseen).to_numpy()
    pairs = ph.pair_legs(ts, sni, ph.same_hello(df), np.flatnonzero(is_unseen), np.flatnonzero(~is_unseen))
    paired = (pairs["partner"] >= 0).mean()
    assert 0.05 < paired < ph.MIN_FRACTION
    assert abs(paired - pairs["reversed"].mean()) < 0.05  # chance is symmetric in time


def _flagged(out: pd.DataFrame) -> np.ndarray:
    return np.array([any(x["code"] == "proxied_for" for x in rs) for rs in out["reasons"]])


def test_a_nat_forwarding_known_clients_hellos_is_not_a_proxy_host() -> None:
    df = _clean_population(400, 6, 40, 3600, seed=5)
    b = Baseline(model=False).fit(df)
    nat = df.iloc[::4].copy()  # a quarter of the connections, seen again on the NAT's outside 1 ms later
    nat["client_ip"] = pd.array(["192.0.2.1"] * len(nat), dtype="string")
    nat["ts"] = nat["ts"] + pd.Timedelta("1ms")
    relayed = pd.concat([df, nat], ignore_index=True)
    assert not _flagged(score(relayed, b)).any()
    # the same legs with the NAT's own hello (it terminates TLS: a proxy) are a proxy host
    donor = captured().iloc[0]
    proxied = with_hello_of(relayed, np.arange(len(df), len(relayed)), donor)
    hit = _flagged(score(proxied, b))
    assert hit[len(df):].all()


# --- relays vs a proxy that copies its client's hello ---------------------------------------------------
def test_same_conversation_needs_the_same_server_side() -> None:
    hello = pd.array(["771,4865,0-10,29,0"] * 5, dtype="string")
    df = pd.DataFrame({"ja3_full": hello, "ja4_o": hello,
                       "ja3s_full": pd.array(["771,4866,43-51"] * 3 + ["771,4865,43-51", None], dtype="string"),
                       "server_flight_bytes": pd.array([1145, 1145, None, 1145, 1145], dtype="Int64")})
    same = ph.same_conversation(df)
    # row 1 relays row 0 (all equal); row 2's handshake was cut short upstream (a mimic: no server flight);
    # row 3 was answered by another stack; row 4 has no JA3S to compare, the rest equal: a relay
    assert list(same(np.array([1, 2, 3, 4]), np.zeros(4, dtype=np.int64))) == [True, False, False, True]
    assert list(ph.same_hello(df)(np.array([1, 2, 3]), np.zeros(3, dtype=np.int64))) == [True, True, True]


# --- dense traffic: few names, every one opened many times a second --------------------------------------
def _dense_with_host(kind: str, seed: int = 11) -> tuple[pd.DataFrame, Baseline, np.ndarray, np.ndarray]:
    """3000 connections of 12 known clients to 5 names in 5 minutes (10/s), and a host at 192.0.2.7 that opens
    its own connection 0.5-5 ms after 150 of them: ``proxy`` with its own hello, ``mimic`` with the client's
    hello and no server flight (its upstream handshake cut short), ``relay`` the client's exact legs.
    Returns the table, the baseline, the host's rows and the client legs they follow."""
    rng = np.random.default_rng(seed)
    df = _clean_population(3000, 12, 5, 300, seed=seed)
    df["server_flight_bytes"] = pd.array(rng.integers(1800, 1900, len(df)), dtype="Int64")
    b = Baseline(model=False).fit(df)
    origin = np.sort(rng.choice(len(df), 150, replace=False))
    host = df.iloc[origin].copy()
    host["client_ip"] = pd.array(["192.0.2.7"] * len(host), dtype="string")
    host["ts"] = host["ts"] + pd.to_timedelta(rng.uniform(0.5, 5.0, len(host)), unit="ms")
    if kind == "mimic":
        host["server_flight_bytes"] = pd.array([None] * len(host), dtype="Int64")
    out = pd.concat([df, host], ignore_index=True)
    rows = np.arange(len(df), len(out))
    if kind == "proxy":
        out = with_hello_of(out, rows, captured().iloc[0])
    return out, b, rows, origin


@pytest.mark.parametrize("kind", ["proxy", "mimic"])
def test_a_proxy_host_in_dense_traffic_is_found_at_a_tight_width(kind: str) -> None:
    df, b, rows, origin = _dense_with_host(kind)
    hit = _flagged(score(df, b))
    assert hit[rows].all()
    # the legs it re-originated (where another client opened the name in between, that one is taken instead)
    legs = np.flatnonzero(hit[: rows[0]])
    assert np.isin(legs, origin).sum() >= 140
    assert (~np.isin(legs, origin)).sum() <= 10
    # at the 2 s width alone this traffic pairs nearly every connection by chance: no surprise there
    ts = df["ts"].dt.tz_convert(None).to_numpy().view(np.int64)
    sni = np.asarray(pd.factorize(df["sni"])[0], dtype=np.int64)
    ids = df["client_ip"].to_numpy(dtype=object)
    pairs = ph.pair_legs(ts, sni, ph.same_conversation(df), rows, np.arange(rows[0]))
    wide = ph.proxy_sources(pairs, ids, sni, ids, widths=(ph.PAIR_WINDOW,)).loc["192.0.2.7"]
    assert wide["chance_rate"] > 0.9
    assert not wide["proxy"]
    host = ph.proxy_sources(pairs, ids, sni, ids).loc["192.0.2.7"]
    assert host["proxy"]
    assert host["fraction"] >= 0.9  # a few latest partners are another client with the host's own stack
    assert host["window_ns"] < ph.PAIR_WINDOW.value


def test_a_relay_in_dense_traffic_and_unseen_clients_are_not_proxy_hosts() -> None:
    df, b, rows, _ = _dense_with_host("relay")
    assert not _flagged(score(df, b)).any()
    # two known clients left out of the baseline: their connections pair only by chance
    clean = df.iloc[: rows[0]]
    unseen = clean["client_ip"].isin(["10.1.0.1", "10.1.0.2"]).to_numpy()
    assert unseen.sum() > 300
    b2 = Baseline(model=False).fit(clean[~unseen])
    assert not _flagged(score(clean, b2)).any()
