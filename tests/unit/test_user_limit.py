"""The shared per-user counts (gateway/user_limit.py): what one gateway makes of the others'
messages — full tables, changes, gaps, restarts, expiry, and input that is not a gateway's."""

from __future__ import annotations

import pytest

from tidings.errors import UserConnectionsFull
from tidings.gateway.presence import Presence
from tidings.gateway.user_limit import CHUNK, UserLimit


def limit(n: int = 3) -> UserLimit:
    return UserLimit("here", Presence(), limit=n)


def test_local_and_remote_counts_add_up_to_the_limit() -> None:
    users = limit(3)
    users.presence.joined("acme", "alice")
    assert not users.receive(
        "gw2", "b", {"s": 1, "c": [["acme", "alice", 1]], "part": 0, "last": True}, 0.0
    )
    users.admit("acme", "alice")  # 2 of 3
    users.receive("gw3", "b", {"s": 1, "c": [["acme", "alice", 1]], "part": 0, "last": True}, 0.0)
    with pytest.raises(UserConnectionsFull):
        users.admit("acme", "alice")
    users.admit("acme", "bob")
    users.admit("globex", "alice")
    # A change of gw3 (absolute count): the slot is free again.
    assert not users.receive("gw3", "b", {"s": 2, "c": [["acme", "alice", 0]]}, 0.1)
    users.admit("acme", "alice")
    assert users.count("acme", "alice") == 2


def test_a_full_table_replaces_what_was_held_once_its_last_part_arrived() -> None:
    users = limit()
    users.receive(
        "gw2", "b", {"s": 1, "c": [["t", "a", 2], ["t", "b", 1]], "part": 0, "last": True}, 0
    )
    users.receive("gw2", "b", {"s": 2, "c": [["t", "c", 1]], "part": 0, "last": False}, 0)
    assert users.count("t", "a") == 2  # not replaced before the last part
    users.receive("gw2", "b", {"s": 3, "c": [["t", "d", 1]]}, 0)  # a change meanwhile
    users.receive("gw2", "b", {"s": 4, "c": [], "part": 1, "last": True}, 0)
    assert [users.count("t", u) for u in "abcd"] == [0, 0, 1, 1]


def test_a_gap_or_a_newcomers_change_asks_for_the_full_table_not_too_often() -> None:
    users = limit()
    assert users.receive("gw2", "b", {"s": 5, "c": [["t", "a", 1]]}, 0.0)  # newcomer: ask
    assert not users.receive("gw2", "b", {"s": 6, "c": []}, 0.1)
    assert not users.receive("gw2", "b", {"s": 9, "c": [["t", "a", 2]]}, 0.2)  # asked 0.2 s ago
    assert users.receive("gw2", "b", {"s": 12, "c": []}, 1.5)  # gap again, later: ask
    assert users.count("t", "a") == 2  # what it has is used meanwhile


def test_a_restarted_gateway_or_one_that_went_quiet_stops_counting() -> None:
    users = limit()
    users.receive("gw2", "old", {"s": 1, "c": [["t", "a", 2]], "part": 0, "last": True}, 0.0)
    users.receive("gw2", "new", {"s": 1, "c": [["t", "b", 1]], "part": 0, "last": True}, 0.0)
    assert (users.count("t", "a"), users.count("t", "b")) == (0, 1)
    users.receive("gw3", "x", {"s": 1, "c": [["t", "b", 1]], "part": 0, "last": True}, 2.0)
    users.expire_peers(3.5)  # gw2 last heard at 0.0, gw3 at 2.0
    assert users.count("t", "b") == 1 and users.gateways == 1
    users.expire_peers(5.5)
    assert users.count("t", "b") == 0 and users.gateways == 0


@pytest.mark.parametrize(
    "body",
    [
        {"s": True, "c": []},
        {"s": "1", "c": []},
        {"s": 1, "c": {}},
        {"s": 1, "c": [["t", "a"]]},
        {"s": 1, "c": [["t", "a", -1]]},
        {"s": 1, "c": [["t", "a", True]]},
        {"s": 1, "c": [["t", 1, 1]]},
        {"s": 1, "c": [["t", "a", 1 << 40]]},
        {"s": 1, "c": [["t", "a", 1]] * (CHUNK + 1)},
    ],
)
def test_a_message_that_is_not_a_gateways_changes_nothing(body: dict[str, object]) -> None:
    users = limit()
    assert not users.receive("gw2", "b", body, 0.0)
    assert users.count("t", "a") == 0 and users.gateways == 0
