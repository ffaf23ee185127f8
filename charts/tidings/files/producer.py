"""Example producer: a stand-in for an application that emits incident and audit events.

It posts one notification every PRODUCER_INTERVAL seconds to the publisher sidecar beside it
(PUBLISHER_URL, loopback), alternating a tenant-wide ``incident.created`` and an
``audit.assigned`` for one user, and prints each answer as a JSON line. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request

URL = os.environ.get("PUBLISHER_URL", "http://127.0.0.1:8081").rstrip("/") + "/v1/notifications"
TENANT = os.environ.get("PRODUCER_TENANT", "demo")
INTERVAL = float(os.environ.get("PRODUCER_INTERVAL", "10"))
if not URL.startswith(("http://", "https://")):
    sys.exit(f"PUBLISHER_URL must be an http(s) URL, not {URL!r}")
PREFIX = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]


def notification(n: int) -> dict[str, object]:
    """The n-th notification; its id makes a retried POST harmless (the stream drops repeats)."""
    if n % 2:
        return {
            "id": f"{PREFIX}-{n}",
            "tenant": TENANT,
            "event": "incident.created",
            "title": f"Incident INC-{n} reported",
            "message": "A spill was reported in hall 3; cleanup is under way.",
            "severity": "warning",
            "data": {"incident_id": f"INC-{n}", "site": "hall-3"},
        }
    return {
        "id": f"{PREFIX}-{n}",
        "tenant": TENANT,
        "event": "audit.assigned",
        "audience": {"user": "alice"},
        "title": f"Audit A-{n} assigned to you",
        "message": "Fire-safety audit, due Friday.",
        "data": {"audit_id": f"A-{n}"},
    }


def post(body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 (an http URL, checked above)
        URL,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (checked)
        answer: dict[str, object] = json.loads(response.read())
        return answer


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    n = 0
    while not stop.is_set():
        n += 1
        body = notification(n)
        try:
            answer = post(body)
            print(json.dumps({"event": body["event"], **answer}), flush=True)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(json.dumps({"event": body["event"], "error": str(exc)}), flush=True)
        stop.wait(INTERVAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
