"""The rules behind revoke, presence and the audit log, without a server (the integration tests
run them against real gateways: test_gateway_revoke.py, test_gateway_presence.py)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.support.tokens import JWT_SECRET
from tidings.auth import Claims, mint_token
from tidings.errors import InvalidField, TidingsError
from tidings.gateway.admin import MAX_TTL, Actor, revocation_from
from tidings.gateway.audit import Audit, claimed_tenant
from tidings.gateway.presence import Presence, merge
from tidings.gateway.registry import Registry
from tidings.gateway.revoke import Revocation, RevocationList, keys_of

WEEK = 7 * 86400.0


def claims(tenant: str = "acme", user: str = "alice", **kw: object) -> Claims:
    return Claims(tenant, user, **kw)  # type: ignore[arg-type]


# --- revocations -------------------------------------------------------------------------------


def test_a_user_revocation_refuses_tokens_issued_up_to_it_and_only_its_user() -> None:
    rev = Revocation(tenant="acme", user="alice", at=1000.0)
    assert rev.refuses(claims(issued_at=999.0), WEEK)
    assert rev.refuses(claims(issued_at=1000.0), WEEK)  # the same second: refused
    assert not rev.refuses(claims(issued_at=1001.0), WEEK)  # a new login
    assert not rev.refuses(claims(user="bob", issued_at=1.0), WEEK)
    assert not rev.refuses(claims(tenant="globex", issued_at=1.0), WEEK)


def test_without_iat_a_token_counts_as_issued_at_the_earliest_it_could_be_accepted() -> None:
    rev = Revocation(tenant="acme", at=1000.0)
    assert rev.refuses(claims(expires_at=1000.0 + WEEK), WEEK)  # could have been in use
    assert not rev.refuses(claims(expires_at=1001.0 + WEEK), WEEK)  # not before the revocation
    assert rev.refuses(claims(expires_at=10**9), 0)  # no lifetime bound: refused until lifted
    assert rev.refuses(claims(), WEEK)  # neither iat nor exp


def test_a_jti_revocation_refuses_that_token_of_that_tenant_only() -> None:
    rev = Revocation(tenant="acme", jti="t-1", at=1000.0)
    assert rev.refuses(claims(jti="t-1", issued_at=5000.0), WEEK)  # whenever it was issued
    assert not rev.refuses(claims(jti="t-2"), WEEK)
    assert not rev.refuses(claims(tenant="globex", jti="t-1"), WEEK)
    assert rev.key in keys_of(claims(jti="t-1"))
    assert rev.key not in keys_of(claims(tenant="globex", jti="t-1"))


def test_keys_are_valid_kv_keys_whatever_the_jti_holds() -> None:
    import re

    for rev in (
        Revocation(tenant="acme"),
        Revocation(tenant="acme", user="a-b_c"),
        Revocation(tenant="acme", jti="ä/..*>  \n"),
    ):
        assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", rev.key), rev.key
        assert Revocation.from_dict(rev.to_dict()) == rev


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"tenant": "a.b", "at": 1},
        {"tenant": "acme", "at": "1"},
        {"tenant": "acme", "at": True},
        {"tenant": "acme", "at": float("nan")},
        {"tenant": "acme", "at": 1, "until": "x"},
        {"tenant": "acme", "at": 1, "user": "u", "jti": "j"},
        {"tenant": "acme", "at": 1, "jti": ""},
        {"tenant": "acme", "at": 1, "jti": "x" * 257},
        {"tenant": "acme", "at": 1, "reason": 7},
        {"tenant": 7, "at": 1},
    ],
)
def test_a_stored_entry_that_is_not_a_revocation_is_refused(body: object) -> None:
    with pytest.raises(InvalidField):
        Revocation.from_dict(body)


def test_the_list_drops_ended_entries_and_checks_three_keys_at_most() -> None:
    revocations = RevocationList(Registry(), max_lifetime=WEEK)
    assert revocations.refusing(claims(issued_at=1.0)) is None  # empty: nothing looked up
    ended = Revocation(tenant="acme", user="alice", at=100.0, until=200.0)
    revocations.entries[ended.key] = ended
    assert revocations.refusing(claims(issued_at=1.0), now=150.0) is ended
    assert revocations.refusing(claims(issued_at=1.0), now=200.0) is None
    assert revocations.entries == {}  # forgotten once over


# --- presence ----------------------------------------------------------------------------------


def test_presence_counts_follow_joins_and_leaves() -> None:
    presence = Presence()
    for tenant, user in (("acme", "a"), ("acme", "a"), ("acme", "b"), ("globex", "a")):
        presence.joined(tenant, user)
    assert presence.answer("acme", None) == {
        "connections": 3,
        "users": {"a": 2, "b": 1},
        "truncated": False,
    }
    assert presence.answer("acme", "a") == {"connections": 2}
    assert presence.answer(None, None)["tenants"] == {"acme": 3, "globex": 1}
    presence.left("acme", "a")
    presence.left("acme", "a")
    presence.left("acme", "a")  # one too many: ignored, never negative
    presence.left("globex", "a")
    assert presence.tenants == {"acme": {"b": 1}}
    assert presence.answer("acme", None, limit=0)["truncated"] is True


def test_presence_answers_are_summed_and_junk_counts_ignored() -> None:
    replies = [
        {"gateway": "gw1", "connections": 3, "users": {"a": 2, "b": 1}, "truncated": False},
        {"gateway": "gw2", "connections": 1, "users": {"a": 1}, "truncated": False},
        {"gateway": "gw3", "connections": -5, "users": {"a": True, "c": "x"}},
    ]
    assert merge("acme", None, replies) == {
        "tenant": "acme",
        "connections": 4,
        "gateways": 3,
        "users": [
            {"user": "a", "connections": 3},
            {"user": "b", "connections": 1},
            {"user": "c", "connections": 0},
        ],
        "truncated": False,
    }


# --- audit -------------------------------------------------------------------------------------


def test_refused_authentications_are_logged_rate_limited_and_never_with_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audit = Audit(CollectorRegistry(), rate=0.001, burst=3)
    forged = mint_token("another-secret-0123456789abcdef0123", tenant="acme", user="x")
    with caplog.at_level(logging.WARNING, logger="tidings.audit"):
        for _ in range(10):
            audit.auth_failed("token_invalid_signature", where="hello", token=forged)
    records = [r for r in caplog.records if r.name == "tidings.audit"]
    assert len(records) == 3  # the burst, then nothing until the bucket refills
    assert all(r.reason == "token_invalid_signature" for r in records)
    assert all(r.tenant_claimed == "acme" for r in records)
    assert audit.suppressed == 7
    assert forged not in caplog.text and forged.split(".")[2] not in caplog.text
    # The next line written says how many were dropped.
    audit._tokens = 1.0
    with caplog.at_level(logging.WARNING, logger="tidings.audit"):
        audit.auth_failed("token_expired", where="refresh", tenant="acme")
    assert caplog.records[-1].suppressed == 7 and audit.suppressed == 0


@pytest.mark.parametrize(
    "token",
    [
        None,
        "garbage",
        "a.b.c",
        mint_token(JWT_SECRET, tenant="acme", user="x", tenant_claim="org"),
        mint_token(JWT_SECRET, tenant="acme", user="x", claims={"tenant": "a b\nINJECTED"}),
        mint_token(JWT_SECRET, tenant="acme", user="x", claims={"tenant": ["acme"]}),
    ],
)
def test_a_claimed_tenant_is_shown_only_when_it_is_a_well_formed_id(token: object) -> None:
    assert claimed_tenant(token, "tenant") is None


def test_admin_actions_are_counted_by_action_and_outcome(caplog: pytest.LogCaptureFixture) -> None:
    metrics = CollectorRegistry()
    audit = Audit(metrics)
    with caplog.at_level(logging.INFO, logger="tidings.audit"):
        audit.admin("revoke", "ok", actor="operator", tenant="acme", closed=2)
        audit.admin("revoke", "refused", actor="acme/root", code="forbidden")
    value = metrics.get_sample_value
    labels = {"action": "revoke", "outcome": "ok"}
    assert value("tidings_gateway_admin_actions_total", labels) == 1
    assert value("tidings_gateway_admin_actions_total", {**labels, "outcome": "refused"}) == 1
    assert [r.actor for r in caplog.records] == ["operator", "acme/root"]


# --- the admin API's bodies (any JSON: a revocation or a precise refusal) -----------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
revoke_bodies = st.fixed_dictionaries(
    {},
    optional={
        "tenant": st.sampled_from(["acme", "a.b", "", "x" * 65]) | _values,
        "user": st.sampled_from(["alice", "a b"]) | _values,
        "jti": st.text(max_size=300) | _values,
        "ttl": st.sampled_from([0, 1, 2.5, WEEK, WEEK + 1, 10**18]) | _values,
        "reason": st.text(max_size=250) | _values,
    },
)


@settings(max_examples=300, deadline=None)
@given(revoke_bodies, st.sampled_from([0.0, WEEK]))
def test_any_revoke_body_is_a_revocation_or_a_precise_refusal(
    body: dict[str, object], lifetime: float
) -> None:
    try:
        rev = revocation_from(body, Actor("operator"), lifetime, 1000.0)
    except TidingsError as exc:
        assert exc.code.http_status == 400 and exc.field is not None
        return
    assert Revocation.from_dict(rev.to_dict()) == rev  # what gateways read back
    if rev.until is not None:
        assert 1000.0 < rev.until <= 1000.0 + (lifetime or MAX_TTL)
