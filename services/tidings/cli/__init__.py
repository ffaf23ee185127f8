"""The `tidings` command line: wiring only; the work happens in the services, the core and the
dev tools. :mod:`tidings.cli.app` assembles the commands, one module per group of them.

Human output goes through rich (on stderr for logs and errors); machine output (a token, a
publish answer) is plain on stdout so scripts can capture it. Exit codes: 0 ok, 1 failed,
2 bad input or configuration, 3 the stream needs an operator's decision.
"""
