"""The partition tests' network lab (tidings.dev.netns): nodes reachable from here through the
lab's own uplink, a cut that drops packets silently, a restore, and nothing left afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from tests.support.partition import network_lab, require_namespaces
from tests.support.waiting import wait_until
from tidings.dev.netns import PREFIX, ip, namespaces, sweep

ECHO = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], 7000)); s.listen(); print('up', flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'hi'); c.close()\n"
)


def reach(host: str, timeout: float) -> bool:
    try:
        with socket.create_connection((host, 7000), timeout=timeout) as s:
            return s.recv(2) == b"hi"
    except OSError:
        return False


def test_a_node_in_the_lab_is_reachable_cut_off_and_back() -> None:
    with network_lab(2) as lab:
        assert lab.network is not None and lab.network.is_private
        assert set(namespaces()) >= {lab.hub, lab.namespace(0), lab.namespace(1)}
        # The only interface made in this namespace: the uplink, on the lab's network.
        assert lab.uplink_address in ip("-o", "-4", "addr", "show", "dev", lab.uplink)
        server = subprocess.Popen(
            [sys.executable, "-c", ECHO, lab.hosts[0]],
            stdout=subprocess.PIPE,
            preexec_fn=lab.enter(0),
        )
        try:
            assert server.stdout is not None and server.stdout.readline() == b"up\n"
            assert lab.pids() == [server.pid]  # it runs inside node 0's namespace
            assert reach(lab.hosts[0], timeout=2)
            lab.cut(0)
            began = time.monotonic()
            assert not reach(lab.hosts[0], timeout=1)  # no answer at all, not a refusal
            assert time.monotonic() - began >= 0.9
            lab.restore(0)
            wait_until(lambda: reach(lab.hosts[0], timeout=1), timeout=10, what="node 0 back")
        finally:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
    assert lab.uplink not in ip("-o", "link", "show")


def test_sweep_removes_what_a_dead_owner_left_and_nothing_of_a_living_one() -> None:
    require_namespaces()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, living = f"{PREFIX}-{gone.pid}-sweep-hub", f"{PREFIX}-{1}-sweep-hub"  # pid 1 lives
    ip("netns", "add", dead)
    ip("netns", "add", living)
    try:
        assert dead in sweep()
        assert dead not in namespaces() and living in namespaces()
    finally:
        for name in (dead, living):
            if name in namespaces():
                ip("netns", "delete", name)
