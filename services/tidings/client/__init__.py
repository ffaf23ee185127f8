"""Python SDKs: publish straight to JetStream (``Publisher``)."""

from tidings.client import events
from tidings.client.publish import Publisher
from tidings.publishing import PublishResult

__all__ = ["PublishResult", "Publisher", "events"]
