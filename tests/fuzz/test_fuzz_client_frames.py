"""The atheris target for the client frame parser (fuzz_client_frames.py), run for a bounded time.

CI runs it for ``SECONDS`` seconds from the fixed seed corpus (``corpus/client_frames``) with a
fixed seed and the frames' dictionary: new inputs go to a temporary directory, never into the
repository. A crash (an exception other than TidingsError, or a frame that does not encode back
to itself) fails the test with the input that caused it (libFuzzer's artifact).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SECONDS = 20


def test_the_client_frame_parser_survives_coverage_guided_fuzzing(tmp_path: Path) -> None:
    found = tmp_path / "corpus"
    found.mkdir()
    seeds = HERE / "corpus" / "client_frames"
    before = sorted(p.name for p in seeds.iterdir())
    run = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_client_frames.py"),
            f"-max_total_time={SECONDS}",
            "-seed=1",
            "-timeout=5",  # seconds per input: a hang is a finding too
            "-rss_limit_mb=1024",
            f"-dict={HERE / 'client_frames.dict'}",
            f"-artifact_prefix={tmp_path}/",
            str(found),
            str(seeds),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    artifacts = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert run.returncode == 0, f"{artifacts}\n{run.stderr[-6000:]}"
    done = [line for line in run.stderr.splitlines() if line.startswith("Done ")]
    assert done, run.stderr[-3000:]  # "Done <runs> runs in <s> second(s)"
    assert int(done[0].split()[1]) > 1000, done[0]  # it did fuzz, not only load the corpus
    assert sorted(p.name for p in seeds.iterdir()) == before  # the seed corpus stays fixed
