#!/usr/bin/env bash
# Install the peers `tidings bench --systems ...` runs beside Tidings, from the package registries
# only: Debian's redis-server, npm's socket.io + @socket.io/redis-adapter + redis + ws and the
# cross-check clients @nats-io/nats-core + socket.io-client (recv.js; into
# benchmarks/peers/node_modules), PyPI's python-socketio (with the bench extra: psutil,
# matplotlib). nats-server comes with the `embedded` extra; its WebSocket listener needs only a
# config file, which the benchmark writes itself.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server >/dev/null; fi
fi
# Debian starts a system redis on 6379; the benchmark runs its own on a free loopback port.
command -v node >/dev/null || { echo "node (>= 18) is needed for the Socket.IO peer" >&2; exit 1; }
(cd "$here" && npm install --no-audit --no-fund --loglevel=error)
python -m pip install -q -e "$root[bench,embedded]"
echo "peers ready: redis-server $(redis-server --version | awk '{print $3}'), node $(node --version),"\
" socket.io $(node -p "require('$here/node_modules/socket.io/package.json').version"),"\
" python-socketio $(python -c 'import importlib.metadata as m; print(m.version("python-socketio"))')"
