"""``python -m tidings.dev.demo``: the demo server (`tidings dev` starts it, nothing else)."""

from tidings.dev.demo.server import main

main()
