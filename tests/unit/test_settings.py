"""Settings come from TIDINGS_* variables; a bad value names the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tidings.errors import ConfigError
from tidings.settings import GROUPS, env_var, load_settings
from tidings.variables import reference_markdown, unknown_variables

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_defaults_load(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.nats.urls == ["nats://127.0.0.1:4222"]
    assert s.stream.name == "TIDINGS"
    assert s.publisher.host == "127.0.0.1"


def test_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_NATS_URLS", "nats://a:4222, tls://b:4222")
    monkeypatch.setenv("TIDINGS_STREAM_MAX_AGE", "1h30m")
    monkeypatch.setenv("TIDINGS_STREAM_MAX_BYTES", "2GiB")
    monkeypatch.setenv("TIDINGS_STREAM_DUPLICATE_WINDOW", "250ms")
    monkeypatch.setenv("TIDINGS_EVENTS_EXTRA", "rocket.launched,rocket.landed")
    monkeypatch.setenv("TIDINGS_LOG_LEVEL", "debug")
    s = load_settings()
    assert s.nats.urls == ["nats://a:4222", "tls://b:4222"]
    assert s.stream.max_age == 5400
    assert s.stream.max_bytes == 2 * 2**30
    assert s.stream.duplicate_window == 0.25
    assert s.events.extra == ["rocket.launched", "rocket.landed"]
    assert s.log.level == "DEBUG"


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("TIDINGS_NATS_URLS", "http://x", "not a NATS URL"),
        ("TIDINGS_NATS_URLS", "", "at least one server URL"),
        ("TIDINGS_STREAM_REPLICAS", "zero", "integer"),
        ("TIDINGS_STREAM_REPLICAS", "7", "less than or equal to 5"),
        ("TIDINGS_STREAM_MAX_AGE", "soon", "not a duration"),
        ("TIDINGS_STREAM_MAX_BYTES", "lots", "not a size"),
        ("TIDINGS_STREAM_STORAGE", "disk", "'file' or 'memory'"),
        ("TIDINGS_PUBLISHER_PORT", "70000", "less than or equal to 65535"),
        ("TIDINGS_NATS_CREDS_FILE", "/nonexistent/x.creds", "not a readable file"),
        ("TIDINGS_LOG_FORMAT", "xml", "'json' or 'console'"),
    ],
)
def test_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{var}: " in str(info.value)
    assert needle in str(info.value)


def test_duplicate_window_must_fit_in_max_age(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STREAM_MAX_AGE", "60")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "TIDINGS_STREAM_DUPLICATE_WINDOW must not exceed TIDINGS_STREAM_MAX_AGE" in str(
        info.value
    )


def test_conflicting_auth_methods_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_NATS_TOKEN", "t")
    monkeypatch.setenv("TIDINGS_NATS_USER", "u")
    monkeypatch.setenv("TIDINGS_NATS_PASSWORD", "p")
    with pytest.raises(ConfigError, match="choose one NATS auth method"):
        load_settings()


def test_unknown_variables_are_reported() -> None:
    env = {"TIDINGS_NATS_URL": "x", "TIDINGS_NATS_URLS": "y", "HOME": "/root"}
    assert unknown_variables(env) == ["TIDINGS_NATS_URL"]


def test_every_variable_is_documented() -> None:
    """docs/configuration.md lists every variable with its default, and nothing that is gone."""
    text = DOC.read_text()
    documented = set(re.findall(r"`(TIDINGS_[A-Z0-9_]+)`", text))
    actual = {env_var(g, f) for g in GROUPS.values() for f in g.model_fields}
    assert actual - documented == set(), "undocumented variables"
    assert documented - actual == set(), "documented variables that no setting reads"
    generated = text.split("<!-- BEGIN GENERATED -->\n")[1].split("<!-- END GENERATED -->")[0]
    assert generated.strip() == reference_markdown().strip(), (
        "docs/configuration.md is stale: regenerate with python -m tidings.variables"
    )
