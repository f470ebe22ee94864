"""The live capture's BPF: it compiles (tcpdump, dumpcap), and filtering the reference captures
keeps what fingerprints need and drops exactly what its docstring says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, needs_reference
from tlsdetect.readers.pcap.bpf import CLIENT_TO_PORTS, RECORD_TYPES, capture_filter
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
def test_a_client_hello_split_over_two_segments_to_443_is_kept_whole(tmp_path: Path) -> None:
    """The client's direction to a TLS port is kept whole: a split ClientHello keeps its fingerprint."""
    src = REFERENCE / "arkime_tls-split-client-hello.pcap"
    kept, _ = read_pcap(_filtered(src, tmp_path / "f.pcap"))
    whole, _ = read_pcap(src)
    assert whole["ja4"].notna().all()
    assert kept["ja4"].tolist() == whole["ja4"].tolist()
    assert kept["ja3"].tolist() == whole["ja3"].tolist()


@needs_tcpdump
@needs_reference
def test_it_drops_the_second_segment_of_a_split_client_hello_to_another_port(tmp_path: Path) -> None:
    """The documented loss: on a port not in CLIENT_TO_PORTS a ClientHello over two segments keeps only its
    first (no state in BPF), and the row says it has no client fingerprint."""
    assert 9443 not in CLIENT_TO_PORTS
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap, wrpcap

    packets = rdpcap(str(REFERENCE / "arkime_tls-split-client-hello.pcap"))
    for p in packets:  # the same bytes on port 9443 (checksums recomputed; lengths and padding untouched)
        tcp = p[TCP]
        tcp.sport, tcp.dport = (9443 if x == 443 else x for x in (tcp.sport, tcp.dport))
        del tcp.chksum
    moved = tmp_path / "9443.pcap"
    wrpcap(str(moved), packets)
    kept, _ = read_pcap(_filtered(moved, tmp_path / "f.pcap"))
    whole, _ = read_pcap(moved)
    assert whole["ja4"].notna().all()
    assert kept["ja4"].isna().all()
    assert len(kept) == len(whole)


def _client_payloads(path: Path, version: str, shown: str) -> list[int]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", f"{version} and tcp.dstport == 443 and tcp.len > 0{shown}",
                          "-T", "fields", "-e", "tcp.len"], check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


@needs_tcpdump
@needs_reference
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_client_application_data_is_dropped_the_rest_of_the_client_direction_kept(tmp_path: Path) -> None:
    """The client's segments to 443 that start an application-data record (``17 03``) are what a live link
    carries most of: the filter drops them; the ones that start a handshake or CCS record stay."""
    src = REFERENCE / "arkime_curl-enabled-tls13.pcap"
    out = _filtered(src, tmp_path / "f.pcap")
    appdata = " and tcp.payload[0:2] == 17:03"
    assert len(_client_payloads(src, "ip", appdata)) >= 3
    assert _client_payloads(out, "ip", appdata) == []
    rest = " and not tcp.payload[0:2] == 17:03"
    assert len(_client_payloads(src, "ip", rest)) >= 2  # the ClientHello, and a segment starting CCS
    assert _client_payloads(out, "ip", rest) == _client_payloads(src, "ip", rest)


def _as_ipv6(src: Path, out: Path) -> Path:
    """The same TCP segments over IPv6 (scapy: addresses mapped, checksums recomputed, no padding)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import rdpcap, wrpcap

    packets = []
    for p in rdpcap(str(src)):
        ip, tcp = p[IP], p[TCP]
        payload = bytes(tcp.payload)[: ip.len - ip.ihl * 4 - tcp.dataofs * 4]
        seg = tcp.copy()
        seg.remove_payload()
        del seg.chksum
        new = Ether(src=p.src, dst=p.dst) / IPv6(src=f"2001:db8::{ip.src.split('.')[-1]}",
                                                  dst=f"2001:db8::{ip.dst.split('.')[-1]}") / seg / Raw(payload)
        new.time = p.time
        packets.append(new)
    wrpcap(str(out), packets)
    return out


@needs_tcpdump
@needs_reference
def test_a_split_client_hello_over_ipv6_is_kept_whole(tmp_path: Path) -> None:
    """The IPv6 half of the client-direction rule (offsets into ``ip6[]``): the split ClientHello moved to IPv6
    keeps its fingerprint through the filter."""
    src = _as_ipv6(REFERENCE / "arkime_tls-split-client-hello.pcap", tmp_path / "v6.pcap")
    whole, _ = read_pcap(src)
    assert whole["client_ip"].str.contains(":").all()
    assert whole["ja4"].notna().all()
    kept, _ = read_pcap(_filtered(src, tmp_path / "f.pcap"))
    assert kept["ja4"].tolist() == whole["ja4"].tolist()
