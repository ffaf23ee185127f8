"""Python SDKs: publish straight to JetStream (``Publisher``); follow a gateway (``Subscriber``)."""

from tidings.client import events
from tidings.client.backoff import Backoff
from tidings.client.errors import Refused
from tidings.client.options import SubscriberOptions
from tidings.client.publish import Publisher
from tidings.client.subscriber import Subscriber, connect
from tidings.publishing import PublishResult

__all__ = [
    "Backoff",
    "PublishResult",
    "Publisher",
    "Refused",
    "Subscriber",
    "SubscriberOptions",
    "connect",
    "events",
]
