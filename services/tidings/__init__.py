"""Tidings: a multi-tenant real-time notification mesh on NATS JetStream."""

__version__ = "0.1.0"
