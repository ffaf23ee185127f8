"""``python -m tidings.demo``: the demo server (`tidings dev` starts it; nothing else should)."""

from tidings.demo.server import main

main()
