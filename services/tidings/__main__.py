"""``python -m tidings``: the command line (how `tidings dev` starts its children)."""

from tidings.cli import main

main()
