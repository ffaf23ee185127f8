"""The WebSocket gateway: sessions (``session``), fan-out hot path (``fanout``), resume windows
(``window``, ``replay``, ``live``), HTTP side (``routes``) and the process (``service``)."""
