#!/usr/bin/env bash
# A whole local goq session in a temporary GOQ_HOME: init, serve, work, sub, wait, stat, output,
# shutdown. Needs `goq` on PATH. Everything it starts is stopped by PID when it ends.
set -euo pipefail

demo=$(mktemp -d "${TMPDIR:-/tmp}/goq-demo.XXXXXX")
export GOQ_HOME="$demo/home"
export GOQ_JSERV_IP=127.0.0.1
export GOQ_JSERV_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$GOQ_HOME" "$demo/jobs"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$demo"
}
trap cleanup EXIT

goq init
goq serve > "$demo/server.log" 2>&1 &
pids+=($!)
goq work > "$demo/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do goq stat 0 > /dev/null 2>&1 && break; sleep 0.1; done

cd "$demo/jobs"
goq sub sh -c 'echo "hello from job on $(hostname), in $PWD"; echo "to stderr" >&2'
goq wait 1
echo "--- o/out.00001:"
cat o/out.00001
echo "---"
goq stat
goq shutdown
