"""One build step on top of pyproject.toml: the wheel carries the browser SDK for the demo page.

``clients/js/src`` is the one source of the SDK (``tidings.js``, ``tidings-inbox.js``,
``tidings-react.js``, ``tidings-toast.js``); a checkout's demo serves them from there, and an
installed package finds the copies this step puts under ``tidings/dev/demo/sdk/`` (see
``tidings.dev.demo.sdk_file``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SDK_SOURCE = Path(__file__).parent / "clients" / "js" / "src"
SDK_FILES = ("tidings.js", "tidings-inbox.js", "tidings-react.js", "tidings-toast.js")
SDK_TARGET = ("tidings", "dev", "demo", "sdk")


class BuildWithSdk(build_py):
    """build_py, then copy the SDK into the built package (never into the source tree)."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install serves clients/js/src directly
            return
        target = Path(self.build_lib, *SDK_TARGET)
        target.mkdir(parents=True, exist_ok=True)
        for name in SDK_FILES:
            source = SDK_SOURCE / name
            if not source.is_file():
                raise FileNotFoundError(f"{source}: the demo page's SDK; build from a checkout")
            shutil.copyfile(source, target / name)


setup(cmdclass={"build_py": BuildWithSdk})
