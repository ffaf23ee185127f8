"""Python SDKs: publish straight to JetStream (``Publisher``); follow a gateway (``Subscriber``)."""

from tidings.client import events
from tidings.client.publish import Publisher
from tidings.client.ws import Backoff, Refused, Subscriber, connect
from tidings.publishing import PublishResult

__all__ = ["Backoff", "PublishResult", "Publisher", "Refused", "Subscriber", "connect", "events"]
