"""Network namespaces for partition faults: each node on its own link to a private bridge.

A :class:`NetLab` builds, with Debian's iproute2 (``ip``), a small network that exists only
while it runs::

    root namespace: <uplink veth> 10.A.B.254/24 ─┐
                                                  ├─ bridge br0 in namespace <run>-hub
    <run>-n0: eth0 10.A.B.1/24 ── veth p0 ────────┤
    <run>-n1: eth0 10.A.B.2/24 ── veth p1 ────────┤   (one per node)

Processes started with :meth:`NetLab.enter` as their ``preexec_fn`` run inside a node's
namespace; processes in the root namespace (gateways, the sidecar, tests) reach every node
through the uplink. :meth:`NetLab.cut` sets node i's bridge port down: its packets vanish (no
reset, no error), so it can reach neither its peers nor its clients, a real partition;
:meth:`NetLab.restore` sets it up again.

Only what this module created is touched: the namespaces carry the prefix, the owner's PID and
a random tag (``tdns-<pid>-<tag>-hub``); the one interface in the root namespace is the uplink
veth, whose address range is chosen free of every address and route already there. Deleting
the hub namespace destroys the uplink too (a veth dies with its peer). :func:`sweep` removes
what an owner that died left behind. A development and test tool: production never imports it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from tidings.errors import StartFailed

if TYPE_CHECKING:
    from tidings.dev.cluster import NatsCluster

PREFIX = "tdns"
NETNS_DIR = Path("/run/netns")
LOCK = Path("/run/tidings-netns.lock")  # serialises the choice of a free address range
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
UPLINK_HOST = 254  # the root namespace's address in the lab's /24


def ip_binary() -> str:
    found = shutil.which("ip") or ("/usr/sbin/ip" if os.access("/usr/sbin/ip", os.X_OK) else None)
    if found is None:
        raise StartFailed("iproute2 not found; install it (Debian: apt-get install -y iproute2)")
    return found


def ip(*args: str, namespace: str | None = None) -> str:
    """Run ``ip [-n namespace] args``; its output, or StartFailed with what it said."""
    cmd = [ip_binary(), *(("-n", namespace) if namespace else ()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StartFailed(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def namespaces(prefix: str = PREFIX) -> list[str]:
    """Names of the network namespaces that start with ``prefix-``."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-"))
    return []


def pids_in(namespace: str) -> list[int]:
    """PIDs of the processes running in ``namespace`` (``ip netns pids``)."""
    with contextlib.suppress(StartFailed):
        return [int(x) for x in ip("netns", "pids", namespace).split()]
    return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _delete(names: Sequence[str], *, timeout: float = 10.0) -> None:
    """Stop what still runs in these namespaces (SIGTERM, then SIGKILL), then delete them."""
    for name in names:
        for pid in pids_in(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name in names:
        for pid in pids_in(name):
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    for name in names:
        with contextlib.suppress(StartFailed):
            ip("netns", "delete", name)


def sweep(prefix: str = PREFIX) -> list[str]:
    """Delete the namespaces of labs whose owner process is gone; the names deleted.

    A lab's namespaces are named ``<prefix>-<owner pid>-<tag>-<part>``: those of a living owner
    (another test run, maybe another user's) are left alone.
    """
    dead = []
    for name in namespaces(prefix):
        parts = name.split("-")
        if len(parts) >= 4 and parts[1].isdigit() and not _alive(int(parts[1])):
            dead.append(name)
    _delete(dead)
    return dead


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address or a route in."""
    found: list[ipaddress.IPv4Network] = []
    for entry in json.loads(ip("-j", "-4", "addr") or "[]"):
        for addr in entry.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                found.append(
                    ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
                )
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                found.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32"))
    return found


def free_network(*, tries: int = 200) -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that overlaps nothing the root namespace has (call under LOCK)."""
    taken = _taken_networks()
    for _ in range(tries):
        second, third = 200 + secrets.randbelow(8), secrets.randbelow(256)
        net = ipaddress.IPv4Network(f"10.{second}.{third}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise StartFailed("no free /24 in 10.200.0.0/13 for the network lab")


def setns_into(namespace: str) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into ``namespace`` (and SIGTERMs it if its owner
    dies, so nothing outlives a killed test run)."""
    path = str(NETNS_DIR / namespace)

    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {namespace}")
        finally:
            os.close(fd)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return enter


class NetLab:
    """``nodes`` namespaces on one private bridge, reachable from the root namespace."""

    def __init__(self, nodes: int, *, prefix: str = PREFIX) -> None:
        if nodes < 1:
            raise StartFailed("a network lab has at least one node")
        self.size = nodes
        self.prefix = prefix
        self.run = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
        self.uplink = f"tdu{secrets.token_hex(5)}"  # <= 15 characters (IFNAMSIZ)
        self.network: ipaddress.IPv4Network | None = None
        self.created: list[str] = []
        self._cut: set[int] = set()

    # -- names and addresses -------------------------------------------------------------------

    @property
    def hub(self) -> str:
        return f"{self.run}-hub"

    def namespace(self, i: int) -> str:
        return f"{self.run}-n{i}"

    def _address(self, host: int) -> str:
        if self.network is None:
            raise StartFailed("the network lab is not started")
        return str(self.network.network_address + host)

    @property
    def hosts(self) -> list[str]:
        """Node i's address (10.A.B.i+1)."""
        return [self._address(i + 1) for i in range(self.size)]

    @property
    def uplink_address(self) -> str:
        """The root namespace's address on the lab's network."""
        return self._address(UPLINK_HOST)

    def enter(self, i: int) -> Callable[[], None]:
        """``preexec_fn`` for a process that must run in node i's namespace."""
        return setns_into(self.namespace(i))

    # -- build and tear down -------------------------------------------------------------------

    def start(self) -> NetLab:
        sweep(self.prefix)
        try:
            with LOCK.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.network = free_network()
                self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.created.append(name)
        ip("link", "set", "lo", "up", namespace=name)

    def _build(self) -> None:
        hub, bits = self.hub, str(self.network.prefixlen if self.network else 24)
        self._add_namespace(hub)
        ip("link", "add", "br0", "type", "bridge", "forward_delay", "0", namespace=hub)
        ip("link", "set", "br0", "up", namespace=hub)
        for i in range(self.size):
            ns = self.namespace(i)
            self._add_namespace(ns)
            port = f"p{i}"
            ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
               namespace=hub)  # fmt: skip
            ip("link", "set", port, "master", "br0", "up", namespace=hub)
            ip("addr", "add", f"{self.hosts[i]}/{bits}", "dev", "eth0", namespace=ns)
            ip("link", "set", "eth0", "up", namespace=ns)
        # The uplink: one end in the root namespace (the only interface created there), the
        # other on the bridge. Deleting the hub namespace deletes both.
        ip("link", "add", self.uplink, "type", "veth", "peer", "name", "up0", "netns", hub)
        ip("link", "set", "up0", "master", "br0", "up", namespace=hub)
        ip("addr", "add", f"{self.uplink_address}/{bits}", "dev", self.uplink)
        ip("link", "set", self.uplink, "up")

    def pids(self) -> list[int]:
        """Every process running in one of this lab's namespaces."""
        return [pid for name in self.created for pid in pids_in(name)]

    def close(self) -> None:
        """Stop whatever still runs inside, delete every namespace (and so every link)."""
        names, self.created = list(reversed(self.created)), []
        _delete(names)
        with contextlib.suppress(StartFailed):  # normally gone with its peer already
            if self.uplink in ip("-o", "link", "show"):
                ip("link", "delete", self.uplink)

    # -- faults --------------------------------------------------------------------------------

    def cut(self, i: int) -> None:
        """Partition node i: its bridge port goes down, its packets are dropped silently."""
        ip("link", "set", f"p{i}", "down", namespace=self.hub)
        self._cut.add(i)

    def restore(self, i: int) -> None:
        ip("link", "set", f"p{i}", "up", namespace=self.hub)
        self._cut.discard(i)

    @property
    def cut_nodes(self) -> set[int]:
        return set(self._cut)

    def __enter__(self) -> NetLab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def unavailable_reason() -> str | None:
    """Why a lab cannot be built here (not root, no iproute2, no namespaces), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    try:
        ip_binary()
    except StartFailed as exc:
        return str(exc)
    if not Path("/proc/self/ns/net").exists():
        return "this kernel has no network namespaces"
    return None


CLIENT_PORT, ROUTE_PORT = 4222, 6222  # every node has its own address: the usual ports


def lab_cluster(lab: NetLab, base_dir: Path) -> NatsCluster:
    """A :class:`NatsCluster` with node i in ``lab``'s namespace i, on its address there."""
    from tidings.dev.cluster import NatsCluster

    return NatsCluster(
        base_dir,
        size=lab.size,
        hosts=lab.hosts,
        ports=[CLIENT_PORT] * lab.size,
        route_ports=[ROUTE_PORT] * lab.size,
        enter=[lab.enter(i) for i in range(lab.size)],
    )
