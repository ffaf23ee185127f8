"""Development tools: `tidings dev` (the stack), the embedded nats-server and the demo page.

Production code (gateway, publisher, client, the core modules) never imports this package; the
command line wires it in (the gateway's demo pages are injected when ``TIDINGS_GATEWAY_DEMO`` is
on), and tests and benchmarks use it directly.
"""
