"""Network-namespace plumbing for the inline evaluation corpus: a client LAN, a middle box, servers.

Why a module of its own: ``eval_inline.py`` decides what traffic to make and how to label it; this
module only builds and tears down the wires, so its rules can be read (and documented) in one place.

Topology (all addresses private, nothing leaves the machine)::

    td-cli (clients)               td-mid (router + interceptors + sensors)     td-srv (servers)
    c0 10.16.1.11..17/24  <--veth-->  m-cli 10.16.1.1/24   m-srv 10.16.2.1/24 <--veth--> s0 10.16.2.2/24
    default via 10.16.1.1             ip_forward=1                                 server addresses 10.16.3.x/32
                                      route 10.16.3.0/24 via 10.16.2.2             default via 10.16.2.1

Interception is an iptables REDIRECT in td-mid's PREROUTING, per client source address, to the
local port of an interceptor listening in td-mid (rules in the ``TD_INTERCEPT`` chain, swapped per
batch). The interceptor reads the original destination with SO_ORIGINAL_DST and opens its own
connection to the real server from the middle box's address (10.16.2.1). Nothing here runs unless
the caller is root; every namespace this module creates is deleted by ``Topology.close``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
PREFIX = "td16"
CLIENT_NET = "10.16.1"
MIDDLE_CLIENT_SIDE = "10.16.1.1"
MIDDLE_SERVER_SIDE = "10.16.2.1"
SERVER_SIDE = "10.16.2.2"
SERVER_NET = "10.16.3"
CHAIN = "TD_INTERCEPT"
REQUIRED_TOOLS = ("ip", "iptables", "dumpcap")


class NetnsError(RuntimeError):
    """The namespaces could not be built; the message names the command and its error."""


def require_root_and_tools(extra: tuple[str, ...] = ()) -> None:
    """Refuse clearly: the inline part needs root (namespaces, iptables) and these tools."""
    if os.geteuid() != 0:
        raise NetnsError("the inline corpus needs root (ip netns, iptables); run as root or pass --no-inline")
    missing = [t for t in (*REQUIRED_TOOLS, *extra) if shutil.which(t) is None]
    if missing:
        raise NetnsError(f"missing tools for the inline corpus: {', '.join(missing)} (scripts/setup.sh installs them)")


def sh(*cmd: str, ns: str | None = None) -> str:
    """Run one plumbing command (inside ``ns`` when given); raise with its stderr on failure."""
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    proc = subprocess.run(full, check=False, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the block's socket calls in namespace ``ns`` (this thread only), then come back.

    A socket keeps the namespace it was created in, so servers and the Python client can live in
    this process while their sockets live in the namespaces.
    """
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{ns}", "rb") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise NetnsError(f"setns({ns}) failed: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            _libc.setns(home.fileno(), CLONE_NEWNET)


def listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` (any namespace) has a TCP socket listening on ``port``."""
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(p[1].endswith(f":{port:04X}") and p[3] == "0A" for p in (ln.split() for ln in lines))


@dataclass
class Topology:
    """The three namespaces; ``client_ips`` are added to the client LAN, ``server_ips`` to the servers."""

    client_ips: list[str]
    server_ips: list[str]
    created: list[str] = field(default_factory=list)
    reserved: set[int] = field(default_factory=set)

    @property
    def cli(self) -> str:
        return f"{PREFIX}-cli"

    @property
    def mid(self) -> str:
        return f"{PREFIX}-mid"

    @property
    def srv(self) -> str:
        return f"{PREFIX}-srv"

    def open(self) -> Topology:
        for ns in (self.cli, self.mid, self.srv):
            if ns in sh("ip", "netns", "list").split():
                sh("ip", "netns", "del", ns)  # a crashed earlier run
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "c0", "netns", self.cli, "type", "veth", "peer", "name", "m-cli", "netns", self.mid)
        sh("ip", "link", "add", "s0", "netns", self.srv, "type", "veth", "peer", "name", "m-srv", "netns", self.mid)
        for ip in self.client_ips:
            sh("ip", "addr", "add", f"{ip}/24", "dev", "c0", ns=self.cli)
        sh("ip", "addr", "add", f"{MIDDLE_CLIENT_SIDE}/24", "dev", "m-cli", ns=self.mid)
        sh("ip", "addr", "add", f"{MIDDLE_SERVER_SIDE}/24", "dev", "m-srv", ns=self.mid)
        sh("ip", "addr", "add", f"{SERVER_SIDE}/24", "dev", "s0", ns=self.srv)
        for ip in self.server_ips:
            sh("ip", "addr", "add", f"{ip}/32", "dev", "lo", ns=self.srv)
        for ns, dev in ((self.cli, "c0"), (self.mid, "m-cli"), (self.mid, "m-srv"), (self.srv, "s0")):
            sh("ip", "link", "set", dev, "up", ns=ns)
        sh("ip", "route", "add", "default", "via", MIDDLE_CLIENT_SIDE, ns=self.cli)
        sh("ip", "route", "add", f"{SERVER_NET}.0/24", "via", SERVER_SIDE, ns=self.mid)
        sh("ip", "route", "add", "default", "via", MIDDLE_SERVER_SIDE, ns=self.srv)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.mid)
        # the interceptors' upstream ports: away from the clients' bound ports (20000-32000)
        sh("sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 60999", ns=self.mid)
        # track the router's own connections too (reserve_upstream_ports reads them from conntrack)
        sh("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "443", "-m", "conntrack", "--ctstate", "NEW", "-j",
           "ACCEPT", ns=self.mid)
        sh("iptables", "-t", "nat", "-N", CHAIN, ns=self.mid)
        sh("iptables", "-t", "nat", "-A", "PREROUTING", "-i", "m-cli", "-p", "tcp", "--dport", "443", "-j", CHAIN,
           ns=self.mid)
        return self

    def intercept(self, sources: list[str], port: int | None) -> None:
        """Redirect port 443 from ``sources`` to the local ``port`` (None: nobody is intercepted)."""
        sh("iptables", "-t", "nat", "-F", CHAIN, ns=self.mid)
        if port is None:
            return
        for ip in sources:
            sh("iptables", "-t", "nat", "-A", CHAIN, "-s", ip, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(port),
               ns=self.mid)

    def reserve_upstream_ports(self) -> int:
        """Keep every source port the interceptors have used from being picked again; returns how many.

        The kernel draws a connect()'s port from a sequence per destination, so two servers can see
        the same router port; the corpus keys a connection by (client address, port). Each port seen in
        the router's conntrack table goes into ``ip_local_reserved_ports``, which connect() skips.
        """
        with entered(self.mid):
            lines = Path("/proc/thread-self/net/nf_conntrack").read_text().splitlines()
            ports = set()
            for ln in lines:
                f: dict[str, str] = {}
                for kv in ln.split():  # the first tuple is the original direction, the second the reply
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        f.setdefault(k, v)
                if f.get("src") == MIDDLE_SERVER_SIDE and f.get("dport") == "443" and f.get("sport", "").isdigit():
                    ports.add(int(f["sport"]))
            if not ports <= self.reserved:
                self.reserved |= ports
                Path("/proc/sys/net/ipv4/ip_local_reserved_ports").write_text(",".join(map(str, sorted(self.reserved))))
        return len(self.reserved)

    def pool(self, front: str, backends: list[str]) -> None:
        """Spread new connections to ``front``:443 round-robin over ``backends`` (``ip:port``; DNAT, nth)."""
        n = len(backends)
        for i, ip in enumerate(backends):
            match = ["-m", "statistic", "--mode", "nth", "--every", str(n - i), "--packet", "0"] if i < n - 1 else []
            sh("iptables", "-t", "nat", "-A", "PREROUTING", "-d", front, "-p", "tcp", "--dport", "443", *match,
               "-j", "DNAT", "--to-destination", ip, ns=self.srv)

    def close(self) -> None:
        """Delete every namespace this run created (their veths and rules go with them)."""
        for ns in reversed(self.created):
            with contextlib.suppress(NetnsError):
                sh("ip", "netns", "del", ns)
        self.created.clear()


@contextlib.contextmanager
def topology(client_ips: list[str], server_ips: list[str]) -> Iterator[Topology]:
    """The namespaces for the block; deleted on exit and on error."""
    topo = Topology(client_ips, server_ips)
    try:
        yield topo.open()
    finally:
        topo.close()
