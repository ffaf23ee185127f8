"""`tidings bench`: the real path (publisher → JetStream → gateway → WebSocket clients) under
load, with its peers measured in the same run. Entry point: :func:`tidings.bench.main.run_bench`;
how to run it and what it measures: ``benchmarks/README.md``.
"""
