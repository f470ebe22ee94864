"""The live capture's BPF: it compiles (tcpdump, dumpcap), and filtering the reference captures
keeps what fingerprints need and drops exactly what its docstring says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, needs_reference
from tlsdetect.readers.pcap.bpf import RECORD_TYPES, capture_filter
from tlsdetect.readers.pcap.engine import read_pcap

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")


def _filtered(src: Path, out: Path, *, vlan: bool = True) -> Path:
    subprocess.run(["tcpdump", "-r", str(src), "-w", str(out), capture_filter(vlan=vlan)],
                   check=True, capture_output=True)  # fmt: skip
    return out


def _client_fps(path: Path) -> list[tuple[str, str, str]]:
    df, _ = read_pcap(path)
    return sorted((str(a), str(b), str(c)) for a, b, c in zip(df["ja3"], df["ja4"], df["sni"], strict=True))


def test_the_filter_names_each_record_type_it_keeps() -> None:
    f = capture_filter(vlan=False)
    for t in RECORD_TYPES:
        assert f"= 0x{t:02x}" in f
    assert "vlan" not in f
    assert capture_filter().count("vlan") == 1


@needs_tcpdump
def test_tcpdump_compiles_it_to_bpf() -> None:
    out = subprocess.run(["tcpdump", "-d", capture_filter()], check=True, capture_output=True, text=True).stdout
    assert "ret      #0" in out
    assert "jeq      #0x86dd" in out  # the IPv6 half is there: libpcap's tcp[] alone is IPv4 only


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap is not installed")
def test_dumpcap_compiles_it_for_loopback() -> None:
    got = subprocess.run(["dumpcap", "-i", "lo", "-d", "-f", capture_filter()], capture_output=True, text=True,
                         check=False)
    assert got.returncode == 0, got.stderr
    assert "ret" in got.stdout


@needs_tcpdump
@needs_reference
@pytest.mark.parametrize("name", ["tls12.pcap", "arkime_tls13.pcap", "ipv6.pcapng", "quic-tls-handshake.pcapng",
                                  "arkime_wireshark-dtls12.pcap", "https-connect.pcap"])  # fmt: skip
def test_filtered_captures_give_the_same_client_fingerprints(name: str, tmp_path: Path) -> None:
    src = REFERENCE / name
    try:
        out = _filtered(src, tmp_path / "f.pcap")
    except subprocess.CalledProcessError:  # a link type without 802.1Q (BSD loopback): the untagged filter
        out = _filtered(src, tmp_path / "f.pcap", vlan=False)
    assert out.stat().st_size <= src.stat().st_size
    assert _client_fps(out) == _client_fps(src)


@needs_tcpdump
@needs_reference
def test_it_drops_the_second_segment_of_a_split_client_hello(tmp_path: Path) -> None:
    """The documented loss: a ClientHello over two segments keeps only its first (no state in BPF)."""
    src = REFERENCE / "arkime_tls-split-client-hello.pcap"
    kept, _ = read_pcap(_filtered(src, tmp_path / "f.pcap"))
    whole, _ = read_pcap(src)
    assert whole["ja4"].notna().all()
    assert kept["ja4"].isna().all()
    assert len(kept) == len(whole)
