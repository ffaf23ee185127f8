"""Fault scenarios on the production shape (3-node NATS cluster at R3, gateways behind nginx)."""
