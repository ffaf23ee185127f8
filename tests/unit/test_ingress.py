"""The dev ingress (tidings.dev.ingress) routes what the chart's Ingress routes, the same way."""

from __future__ import annotations

import re
import resource
from pathlib import Path

import pytest
import yaml

from tidings.dev.ingress import TIMEOUT_SECONDS, Upstream, render_config
from tidings.errors import StartFailed
from tidings.settings import GatewaySettings

CHART = Path(__file__).resolve().parents[2] / "charts" / "tidings"
UPSTREAMS = [Upstream(8080, 8083), Upstream(8180, 8183)]


def locations(conf: str) -> dict[str, str]:
    """``location <path> { … }`` blocks by path (no nested blocks in ours)."""
    return dict(re.findall(r"location (\S+) \{(.*?)\n    \}", conf, re.S))


def conf(tmp_path: Path) -> str:
    return render_config(tmp_path, host="127.0.0.1", port=8090, upstreams=UPSTREAMS)


def test_the_chart_paths_go_to_the_same_ports(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = [p for h in values["gateway"]["ingress"]["hosts"] for p in h["paths"]]
    blocks = locations(conf(tmp_path))
    upstream = {"http": "tidings_data", "api": "tidings_api"}
    assert {p["path"]: f"proxy_pass http://{upstream[p['port']]};" for p in paths} == {
        path: body.split("\n")[1].strip() for path, body in blocks.items()
    }


def test_every_gateway_is_an_upstream_with_no_stickiness(tmp_path: Path) -> None:
    text = conf(tmp_path)
    for u in UPSTREAMS:
        assert f"server 127.0.0.1:{u.port} " in text
        assert f"server 127.0.0.1:{u.api_port} " in text
    assert not re.search(r"\b(ip_hash|hash|sticky)\b", text)


def test_websocket_settings_match_the_chart_annotations(tmp_path: Path) -> None:
    template = (CHART / "templates" / "ingress-gateway.yaml").read_text()
    chart_timeout = re.search(r'proxy-read-timeout: "(\d+)"', template)
    assert chart_timeout and int(chart_timeout.group(1)) == TIMEOUT_SECONDS
    assert 10 * GatewaySettings().ping_interval < TIMEOUT_SECONDS  # idle between pings
    for path, body in locations(conf(tmp_path)).items():
        for line in (
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            f"proxy_read_timeout {TIMEOUT_SECONDS}s;",
            f"proxy_send_timeout {TIMEOUT_SECONDS}s;",
            "proxy_buffering off;",
            "proxy_request_buffering off;",
        ):
            assert line in body, (path, line)
    # What the chart's Ingress asks ingress-nginx for, the dev ingress does too.
    directives = {
        "proxy-read-timeout": "proxy_read_timeout {}s;",
        "proxy-send-timeout": "proxy_send_timeout {}s;",
        "proxy-buffering": "proxy_buffering {};",
        "proxy-request-buffering": "proxy_request_buffering {};",
        "proxy-http-version": "proxy_http_version {};",
        "proxy-connect-timeout": "proxy_connect_timeout {}s;",
        "proxy-next-upstream": "proxy_next_upstream {};",
    }
    annotations = dict(re.findall(r'nginx\.ingress\.kubernetes\.io/([\w-]+): "([^"]+)"', template))
    assert set(annotations) == set(directives)
    for path, body in locations(conf(tmp_path)).items():
        for name, value in annotations.items():
            assert directives[name].format(value) in body, (path, name)


def test_sized_for_a_reconnect_storm(tmp_path: Path) -> None:
    """10,000 WebSockets (20,000 proxied connections) fit: descriptors are limited per process
    (nginx cannot raise the hard limit), so two workers or more, each accepting on its own
    queue, and accept queues far beyond nginx's default of 511."""
    text = conf(tmp_path)
    workers = int(re.search(r"^worker_processes (\d+);", text, re.M).group(1))  # type: ignore[union-attr]
    nofile = int(re.search(r"^worker_rlimit_nofile (\d+);", text, re.M).group(1))  # type: ignore[union-attr]
    connections = int(re.search(r"worker_connections (\d+);", text).group(1))  # type: ignore[union-attr]
    assert connections < nofile <= resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert workers >= 2 and workers * connections >= 2 * 10_000
    assert "reuseport backlog=4096;" in text and "multi_accept on;" in text


def test_every_file_nginx_writes_is_under_its_directory(tmp_path: Path) -> None:
    text = conf(tmp_path)
    written = re.findall(
        r"^\s*(?:pid|error_log|access_log|\w+_temp_path) (\S+?)(?: warn| timed)?;$", text, re.M
    )
    assert len(written) == 8
    assert all(Path(w).is_relative_to(tmp_path) for w in written), written


def test_no_gateway_is_refused() -> None:
    with pytest.raises(StartFailed, match="at least one gateway"):
        render_config(Path("/x"), host="127.0.0.1", port=1, upstreams=[])
