"""Finisher hosts on one machine: each in its own network namespace, its link shaped by the kernel.

    with HostNetwork(3, rate_bytes_per_s=4e6) as network:      # namespaces bdrch-<pid>-h1 … h3
        moto_url = network.forward(loopback_moto_url)           # http://10.231.X.1:PORT, reached over each link
        process = network.popen(network.hosts[0], finisher_command("run", "--drain"), env=..., stdout=log)
        network.cut(network.hosts[1]); network.restore(network.hosts[1])
        network.kill_all(network.hosts[0])                      # kill -9 of every process in its namespace

The topology: a bridge ``bdrch<pid>b`` in the root namespace holds the services address ``10.231.X.1``; each host
is a namespace with one veth pair to that bridge (``eth0`` inside, ``10.231.X.1n``), its own loopback, no default
route: a host reaches the services address and nothing else. The services (the harness's moto server, PostgreSQL)
stay in the root namespace: PostgreSQL listens on the services address itself; the moto server keeps its loopback
port (the loopback guard of ``moto_server``) and ``forward`` maps the services address's port to it by DNAT (an nft
table of this run, ``route_localnet`` on the bridge only). Each link is capped by a ``tbf`` qdisc at both ends
(into the host: downloads; out of it: uploads). Every finisher runs in its own UTS namespace too, named after its
host, so its lease owner reads ``h1:<pid>``.

Everything is named with this process's id; it is removed on exit of the block and at interpreter exit, and what a
killed run left (its pid gone) is removed when the next network is made. Nothing here skips: a machine that cannot
make namespaces (no root, no ``ip``) raises HostNetworkUnavailable.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

__all__ = ["PREFIX", "Host", "HostNetwork", "HostNetworkUnavailable"]

#: every namespace, bridge and nft table of these networks starts with it (followed by the creating pid)
PREFIX = "bdrch"
_NAMESPACE = re.compile(rf"^{PREFIX}-(\d+)-h\d+$")
_BRIDGE = re.compile(rf"^{PREFIX}(\d+)b$")
_TABLE = re.compile(rf"^{PREFIX}_(\d+)$")
#: the /16 the per-run /24 is taken from (one free third octet per run)
_SUPERNET = "10.231"


class HostNetworkUnavailable(RuntimeError):
    """This machine cannot make the hosts' namespaces, links or shaping (the command and its error named)."""


@dataclass(frozen=True)
class Host:
    """One finisher host: its namespace, its address, and its link's two ends."""

    name: str
    namespace: str
    address: str
    #: the veth end in the root namespace (on the bridge); ``eth0`` is the end inside the namespace
    link: str


def _ip_binary() -> str:
    found = shutil.which("ip") or ("/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else None)
    if found is None:
        raise HostNetworkUnavailable("no `ip` command (iproute2): `make setup` installs it")
    return found


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise HostNetworkUnavailable(f"{' '.join(argv)}: {err}") from err
    if check and done.returncode != 0:
        raise HostNetworkUnavailable(f"{' '.join(argv)} failed ({done.returncode}): "
                                     f"{(done.stderr or done.stdout).strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(ip: str | None = None) -> list[str]:
    """Remove the namespaces, bridges and nft tables of runs whose process is gone; returns their names."""
    ip = ip or _ip_binary()
    removed = []
    for line in _run(ip, "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAMESPACE.match(name)
        if match and not _alive(int(match.group(1))):
            _kill_namespace(ip, name)
            _run(ip, "netns", "delete", name, check=False)
            removed.append(name)
    for line in _run(ip, "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip() if ":" in line else ""
        match = _BRIDGE.match(name)
        if match and not _alive(int(match.group(1))):
            _run(ip, "link", "delete", name, check=False)
            removed.append(name)
    if shutil.which("nft"):
        for line in _run("nft", "list", "tables", "ip", check=False).stdout.splitlines():
            name = line.split()[-1] if line.startswith("table") else ""
            match = _TABLE.match(name)
            if match and not _alive(int(match.group(1))):
                _run("nft", "delete", "table", "ip", name, check=False)
                removed.append(name)
    return removed


def _namespace_pids(ip: str, namespace: str) -> list[int]:
    listed = _run(ip, "netns", "pids", namespace, check=False).stdout.split()
    return [int(pid) for pid in listed if pid.isdigit()]


def _kill_namespace(ip: str, namespace: str) -> list[int]:
    """SIGKILL every process in ``namespace`` (until none is left); returns the pids killed."""
    killed: list[int] = []
    for _ in range(50):
        pids = _namespace_pids(ip, namespace)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return sorted(set(killed))


def _free_subnet(ip: str) -> ipaddress.IPv4Network:
    used = _run(ip, "-4", "-o", "addr", "show", check=False).stdout + _run(ip, "-4", "route", check=False).stdout
    for third in range(1, 255):
        if f"{_SUPERNET}.{third}." not in used:
            return ipaddress.IPv4Network(f"{_SUPERNET}.{third}.0/24")
    raise HostNetworkUnavailable(f"no free /24 left in {_SUPERNET}.0.0/16")


class HostNetwork:
    """``hosts`` namespaces on one bridge, each link capped at ``rate_bytes_per_s`` (None: not shaped)."""

    _active: HostNetwork | None = None

    def __init__(self, hosts: int, *, rate_bytes_per_s: float | None = None) -> None:
        if not 1 <= hosts <= 40:
            raise ValueError(f"{hosts} hosts: 1 to 40 on one network")
        self.count, self.rate_bytes_per_s = hosts, rate_bytes_per_s
        self.tag = str(os.getpid())
        self.bridge = f"{PREFIX}{self.tag}b"
        self.table = f"{PREFIX}_{self.tag}"
        self.hosts: list[Host] = []
        self.services_address = ""
        self._forwarded: dict[int, int] = {}
        self._ip = ""

    # --- making and removing --------------------------------------------------------------------------------
    def __enter__(self) -> HostNetwork:
        self.create()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.remove()

    def create(self) -> None:
        """Make the bridge, the namespaces and their links; HostNetworkUnavailable (never a skip) when refused."""
        if HostNetwork._active is not None:
            raise HostNetworkUnavailable("one host network per process at a time (names carry the pid)")
        if os.geteuid() != 0:
            raise HostNetworkUnavailable("network namespaces need root (CAP_NET_ADMIN): run the tests as root")
        self._ip = ip = _ip_binary()
        remove_stale(ip)
        HostNetwork._active = self
        atexit.register(self.remove)
        subnet = _free_subnet(ip)
        addresses = list(subnet.hosts())
        self.services_address = str(addresses[0])
        _run(ip, "link", "add", self.bridge, "type", "bridge")
        _run(ip, "addr", "add", f"{self.services_address}/24", "dev", self.bridge)
        _run(ip, "link", "set", self.bridge, "up")
        for number in range(1, self.count + 1):
            host = Host(f"h{number}", f"{PREFIX}-{self.tag}-h{number}", str(addresses[9 + number]),
                        f"{PREFIX}{self.tag}v{number}")
            _run(ip, "netns", "add", host.namespace)
            self.hosts.append(host)
            _run(ip, "link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
            _run(ip, "link", "set", host.link, "master", self.bridge, "up")
            _run(ip, "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run(ip, "-n", host.namespace, "link", "set", "eth0", "up")
            _run(ip, "-n", host.namespace, "link", "set", "lo", "up")
            if self.rate_bytes_per_s:
                self.shape(host, self.rate_bytes_per_s)

    def remove(self) -> None:
        """Kill what runs in the namespaces, remove them, the bridge and the nft table (idempotent)."""
        if HostNetwork._active is not self:
            return
        for host in self.hosts:
            _kill_namespace(self._ip, host.namespace)
            _run(self._ip, "netns", "delete", host.namespace, check=False)
        _run(self._ip, "link", "delete", self.bridge, check=False)
        if self._forwarded:
            _run("nft", "delete", "table", "ip", self.table, check=False)
        self.hosts, self._forwarded = [], {}
        HostNetwork._active = None
        atexit.unregister(self.remove)

    # --- links ----------------------------------------------------------------------------------------------
    def shape(self, host: Host, rate_bytes_per_s: float) -> None:
        """Cap ``host``'s link at ``rate_bytes_per_s`` each way (tbf; a burst of 10 ms of the rate, >= 128 KiB:
        the veth hands over GSO segments of up to 64 KiB)."""
        bits = int(rate_bytes_per_s * 8)
        burst = max(128 * 1024, int(rate_bytes_per_s / 100))
        shaping = ["root", "tbf", "rate", f"{bits}bit", "burst", str(burst), "latency", "200ms"]
        _run("tc", "qdisc", "replace", "dev", host.link, *shaping)
        _run(self._ip, "netns", "exec", host.namespace, "tc", "qdisc", "replace", "dev", "eth0", *shaping)

    def cut(self, host: Host) -> None:
        """``host``'s link down: its packets go nowhere (its TCP connections stall, its processes keep running)."""
        _run(self._ip, "link", "set", host.link, "down")

    def restore(self, host: Host) -> None:
        """``host``'s link up again."""
        _run(self._ip, "link", "set", host.link, "up")

    def forward(self, loopback_url: str) -> str:
        """``loopback_url`` (``http://127.0.0.1:PORT``, a server of the root namespace) as the hosts reach it:
        the services address's PORT, mapped to the loopback port (DNAT, only for packets from the bridge)."""
        parts = urlsplit(loopback_url)
        if parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"{loopback_url!r}: only a 127.0.0.1 URL with a port is forwarded")
        port = parts.port
        if not self._forwarded:
            _run("nft", "add", "table", "ip", self.table)
            _run("nft", "add", "chain", "ip", self.table, "prerouting",
                 "{ type nat hook prerouting priority dstnat; }")
            # the DNAT'ed packets arrive on the bridge addressed to 127.0.0.1: routed only with route_localnet
            Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet").write_text("1\n", encoding="ascii")
        if port not in self._forwarded:
            _run("nft", "add", "rule", "ip", self.table, "prerouting", "iifname", self.bridge, "ip", "daddr",
                 self.services_address, "tcp", "dport", str(port), "dnat", "to", f"127.0.0.1:{port}")
            self._forwarded[port] = port
        return f"{parts.scheme}://{self.services_address}:{port}{parts.path}"

    def is_services_url(self, url: str) -> bool:
        """True when ``url`` points at this network's services address (reachable only from its hosts)."""
        return bool(self.services_address) and urlsplit(url).hostname == self.services_address

    # --- processes ------------------------------------------------------------------------------------------
    def command(self, host: Host, argv: Sequence[str]) -> list[str]:
        """``argv`` run in ``host``'s namespace, in a UTS namespace of its own whose hostname is the host's
        name (``exec`` all the way: the process's pid is the one Popen returns)."""
        return [self._ip, "netns", "exec", host.namespace, "unshare", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec "$@"', host.name, *argv]

    def popen(self, host: Host, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None,
              stdout: IO[Any] | int | None = None) -> subprocess.Popen[str]:
        """Start ``argv`` on ``host`` with ``env`` (stderr with stdout)."""
        return subprocess.Popen(self.command(host, argv), env=dict(env), cwd=cwd, stdout=stdout,
                                stderr=subprocess.STDOUT, text=True)

    def pids(self, host: Host) -> list[int]:
        """Every process in ``host``'s namespace."""
        return _namespace_pids(self._ip, host.namespace)

    def kill_all(self, host: Host) -> list[int]:
        """``kill -9`` of every process in ``host``'s namespace (until none is left); returns the pids."""
        return _kill_namespace(self._ip, host.namespace)
