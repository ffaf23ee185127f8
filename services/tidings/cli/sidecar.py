"""The command line's HTTP client: one notification to the publisher sidecar, its answer or a
clean failure that carries the sidecar's error code and Retry-After."""

from __future__ import annotations

from typing import Any

from tidings.cli.common import fail
from tidings.errors import TidingsError, Unavailable


def publish_http(
    base: str, body: dict[str, Any], bearer: str | None, *, timeout: float
) -> dict[str, Any]:
    """POST ``body`` to ``<base>/v1/notifications``; the answer {"id","seq","duplicate"}."""
    import httpx  # lazily: `tidings token` needs no HTTP client

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    target = base.rstrip("/") + "/v1/notifications"
    try:
        resp = httpx.post(target, json=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        fail(Unavailable(f"cannot reach the publisher at {target} ({exc}); is `tidings dev` up?"))
    try:
        answer = resp.json()
    except ValueError:
        answer = {"reason": resp.text.strip() or resp.reason_phrase}
    if resp.is_success and isinstance(answer, dict):
        return answer
    error = answer.get("error", answer) if isinstance(answer, dict) else {"reason": str(answer)}
    reason = f"{error.get('reason', resp.reason_phrase)} (HTTP {resp.status_code}"
    reason += f" {error['code']})" if "code" in error else ")"
    if "Retry-After" in resp.headers:
        reason += f"; retry after {resp.headers['Retry-After']}s"
    fail(TidingsError(reason, field=error.get("field")), 1)
