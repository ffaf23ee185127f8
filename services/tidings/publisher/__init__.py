"""The publisher sidecar: an HTTP front door to JetStream with a durable outbox.

``create_app`` builds the ASGI app; ``serve`` runs it on uvicorn (``python -m tidings.publisher``
or ``tidings publisher``).
"""

from tidings.publisher.app import create_app, serve

__all__ = ["create_app", "serve"]
