"""The gateway's NATS ingest alone: CPU per live message before the handler (issue 12 item 3)."""
