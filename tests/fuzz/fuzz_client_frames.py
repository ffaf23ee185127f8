"""atheris target: a WebSocket text frame's bytes, as the gateway's session decodes them.

What a session does with a text frame (gateway/session.py): ``protocol.parse_client_frame`` with
the gateway's limits; on a refusal, the ``id`` it can still read for the error frame
(``session._request_id``) and the error frame itself, encoded. The oracle: only a
:class:`tidings.errors.TidingsError` (the documented error class; its code goes on the wire) may
escape, and a frame that parses encodes back to the same frame.

Run by tests/fuzz/test_fuzz_client_frames.py for a bounded time with the seed corpus in
``corpus/client_frames``; by hand: ``python tests/fuzz/fuzz_client_frames.py -max_total_time=60
/tmp/new-corpus tests/fuzz/corpus/client_frames`` (new inputs go into the first directory).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["tidings"]):
    from tidings import protocol as p
    from tidings.errors import TidingsError
    from tidings.gateway.session import _request_id

MAX_BYTES = 16 * 1024  # the gateway's default TIDINGS_GATEWAY_MAX_FRAME_BYTES
MAX_ROOMS = 64


def test_one_input(data: bytes) -> None:
    try:
        frame = p.parse_client_frame(data, max_bytes=MAX_BYTES, max_rooms=MAX_ROOMS)
    except TidingsError as exc:
        frame_id = _request_id(data)
        assert frame_id is None or 0 <= frame_id <= p.MAX_SAFE_INTEGER
        p.encode(p.error_frame(exc, id=frame_id, close=exc.code.always_fatal))
        return
    # What a client encodes (the SDK's encoder) parses back to the same frame.
    again = p.parse_client_frame(
        p.encode_client_frame(frame), max_bytes=4 * MAX_BYTES, max_rooms=MAX_ROOMS
    )
    assert again == frame, (frame, again)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
