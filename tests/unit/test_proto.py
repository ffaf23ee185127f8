"""The envelope's generated code is not stale, and the proto passes ``buf lint``."""

from __future__ import annotations

import subprocess
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import descriptor_pb2

from tidings.v1 import notification_pb2

ROOT = Path(__file__).resolve().parents[2]
PROTO = "tidings/v1/notification.proto"


def _tool(name: str) -> str:
    return str(Path(sysconfig.get_path("scripts")) / name)


def test_generated_python_matches_the_proto(tmp_path: Path) -> None:
    out = tmp_path / "set.pb"
    subprocess.run(
        [_tool("protoc"), "-I", str(ROOT / "proto"), f"--descriptor_set_out={out}", PROTO],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(fresh.message_type)  # protoc's generated code omits the default ones
    committed = descriptor_pb2.FileDescriptorProto.FromString(
        notification_pb2.DESCRIPTOR.serialized_pb
    )
    assert committed == fresh, "run proto/generate.sh: services/tidings/v1 is stale"


def _drop_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    for message in messages:
        for f in message.field:
            f.ClearField("json_name")
        _drop_json_names(message.nested_type)


def test_generated_stub_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [_tool("protoc"), "-I", str(ROOT / "proto"), f"--mypy_out={tmp_path}", PROTO],
        check=True,
        capture_output=True,
    )
    stub = "tidings/v1/notification_pb2.pyi"
    fresh = (tmp_path / stub).read_text()
    assert (ROOT / "services" / stub).read_text() == fresh, "run proto/generate.sh"


def test_buf_lint_passes() -> None:
    result = subprocess.run(
        [_tool("buf"), "lint"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
