"""The wire protocol between a client (browser, SDK) and the gateway: frames and limits.

The one definition the gateway and the Python client share; ``docs/protocol.md`` is its
normative prose and tests keep the two in step. Error and close codes live in
:mod:`tidings.codes`, the errors raised for a bad frame in :mod:`tidings.errors`.

- :mod:`~tidings.protocol.limits`: the subprotocol, the path and the bounds;
- :mod:`~tidings.protocol.schema`: how a frame's declared fields drive its encoding and parsing;
- :mod:`~tidings.protocol.client_frames`: ``hello``, ``subscribe``, … and the gateway's parser;
- :mod:`~tidings.protocol.server_frames`: ``welcome``, ``error``, … and the client's parser;
- :mod:`~tidings.protocol.notification`: the ``notification`` line, built once, sent to many.

Importers use this package (``from tidings import protocol as p``), not its modules.
"""

from tidings.protocol.client_frames import (
    CLIENT_FRAME_TYPES,
    ClientFrame,
    Hello,
    Ping,
    Refresh,
    Subscribe,
    Unsubscribe,
    check_named_room,
    encode_client_frame,
    parse_client_frame,
)
from tidings.protocol.limits import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_ROOMS,
    MAX_EPOCH_LENGTH,
    MAX_SAFE_INTEGER,
    PATH,
    SUBPROTOCOL,
)
from tidings.protocol.notification import encode_notification
from tidings.protocol.server_frames import (
    SERVER_FRAME_TYPES,
    ErrorFrame,
    InboxFrame,
    NotificationFrame,
    Pong,
    ReconnectFrame,
    Refreshed,
    Reset,
    ResetReason,
    ServerFrame,
    Subscribed,
    Synced,
    Unsubscribed,
    UnsubscribeReason,
    Welcome,
    encode,
    error_frame,
    parse_server_frames,
)

__all__ = [
    "CLIENT_FRAME_TYPES",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_ROOMS",
    "MAX_EPOCH_LENGTH",
    "MAX_SAFE_INTEGER",
    "PATH",
    "SERVER_FRAME_TYPES",
    "SUBPROTOCOL",
    "ClientFrame",
    "ErrorFrame",
    "Hello",
    "InboxFrame",
    "NotificationFrame",
    "Ping",
    "Pong",
    "ReconnectFrame",
    "Refresh",
    "Refreshed",
    "Reset",
    "ResetReason",
    "ServerFrame",
    "Subscribe",
    "Subscribed",
    "Synced",
    "Unsubscribe",
    "UnsubscribeReason",
    "Unsubscribed",
    "Welcome",
    "check_named_room",
    "encode",
    "encode_client_frame",
    "encode_notification",
    "error_frame",
    "parse_client_frame",
    "parse_server_frames",
]
