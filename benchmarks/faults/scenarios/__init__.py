"""One module per fault scenario; each has ``NAME`` and ``async def run(directory, **size)``
returning one report row (a dict: scenario, clients, rate, lost/duplicated, recovery p50/p99/max,
JetStream reads, peak RSS)."""
