"""Free ports for the dev tools and tests: the kernel offers a port again before the first
caller bound it several times in 300 probes here, and two gateways of one test once got the
same data port that way (the second never listened)."""

from __future__ import annotations

import socket

from tidings.ports import free_port, port_in_use


def test_a_process_is_never_handed_the_same_free_port_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)


def test_a_free_port_is_free_and_a_listening_one_is_in_use() -> None:
    port = free_port()
    assert not port_in_use(port)
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        assert port_in_use(port)
