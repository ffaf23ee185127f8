#!/usr/bin/env bash
# Regenerate the Python code for the envelope. Needs the dev extra (protoc + mypy-protobuf).
# tests/unit/test_proto.py fails when the committed files are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
protoc -I proto --python_out=services --mypy_out=services proto/tidings/v1/notification.proto
