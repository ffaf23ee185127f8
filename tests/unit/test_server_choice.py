"""The reconnect's choice of server: away from the one just lost (a frozen server costs a whole
connect timeout), each server at most once per reconnect wait, least recently tried first."""

from __future__ import annotations

from urllib.parse import urlparse

from nats.aio.client import Server

from tidings.nats_link import ServerChoice

A, B, C = "127.0.0.1:4001", "127.0.0.1:4002", "127.0.0.1:4003"


def pool(*netlocs: str) -> list[Server]:
    return [Server(uri=urlparse(f"nats://{n}")) for n in netlocs]


def test_the_server_just_lost_is_tried_last_whatever_the_pool_order() -> None:
    for order in ([A, B, C], [B, A, C], [C, B, A]):
        choice = ServerChoice(wait=1.0)
        choice.connected(A)
        picked = [choice(pool(*order), {})[0] for _ in range(3)]
        assert [s.uri.netloc for s in picked if s is not None][-1] == A
        assert {s.uri.netloc for s in picked if s is not None} == {A, B, C}


def test_no_pause_until_every_server_was_tried_then_the_reconnect_wait() -> None:
    choice = ServerChoice(wait=1.0)
    choice.connected(A)
    delays = [choice(pool(A, B, C), {})[1] for _ in range(3)]
    assert delays == [0.0, 0.0, 0.0]
    server, delay = choice(pool(A, B, C), {})
    assert server is not None and server.uri.netloc != A  # the round starts again, A last
    assert 0.9 < delay <= 1.0


def test_a_successful_connect_starts_the_next_loss_afresh() -> None:
    choice = ServerChoice(wait=1.0)
    choice.connected(A)
    first, _ = choice(pool(A, B), {})
    assert first is not None and first.uri.netloc == B
    choice.connected(B)
    again, delay = choice(pool(A, B), {})
    assert again is not None and again.uri.netloc == A and delay == 0.0


def test_an_empty_pool_gives_no_server() -> None:
    assert ServerChoice(wait=1.0)([], {}) == (None, 0.0)
