"""The inbox schema's revisions, oldest first (``0001_…``)."""
