"""The JS SDK's own tests (Node's test runner, the `ws` package) against a real `tidings dev`.

They live in clients/js/test/; running them from here makes the README's single `pytest`
command cover them.
"""

from __future__ import annotations

import os
import re
import subprocess

from tests.e2e.harness import JS_DIR, DevStack, node_command


def test_the_js_client_suite_passes_against_a_real_gateway(dev_stack: DevStack) -> None:
    info = dev_stack.info()
    env = {
        **os.environ,
        "TIDINGS_WS_URL": info["gateway"]["ws"],
        "TIDINGS_TOKEN": info["token"],
        "TIDINGS_PUBLISHER_URL": info["publisher"]["url"],
        "TIDINGS_DEMO_URL": info["demo"]["url"],
        "TIDINGS_INBOX_API_URL": info["inbox-api"]["url"],
        "TIDINGS_DEV_JSON": str(dev_stack.dir / "dev.json"),
    }
    run = subprocess.run(
        # One file at a time: a test drains the shared gateway.
        [node_command(), "--test", "--test-concurrency=1", "test/"],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    passed = re.search(r"^# pass (\d+)$", output, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", output, re.MULTILINE)
    assert passed is not None and failed is not None, output
    assert int(failed.group(1)) == 0, output
    assert int(passed.group(1)) >= 20, output  # the suite ran, not an empty directory
