#!/usr/bin/env bash
# replicas-test.sh — two `kiln serve` replicas behind HAProxy (deploy/haproxy.cfg) on loopback, tested
# end to end by deploy/replicas-load.mjs: session affinity, 64 clients for 30 s while one replica is
# killed (SIGKILL) and restarted and the other drained (SIGTERM) and restarted, with no failed request.
# Installs HAProxy (Debian's) when it is missing (needs root and apt-get); stops everything it started,
# on failure too. Exits 0 only when every check passed.
#
#   deploy/replicas-test.sh                     # build/kiln, models from ../shared
#   KILN=build/kiln SHARED=../shared CLIENTS=64 SECONDS=30 deploy/replicas-test.sh
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KILN=$(realpath "${KILN:-$ROOT/build/kiln}")
SHARED=${SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/tiny-qwen3 # has a chat template (affinity keys on chat messages)
WORK=$(mktemp -d)
HAPROXY_PID=
fail() { echo "FAIL $1: ${2:-}"; exit 1; }

cleanup() {
    [ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null
    # the replicas the load script started (and restarted): their ids are in $WORK/pids
    if [ -f "$WORK/pids" ]; then
        while read -r pid; do kill -9 "$pid" 2>/dev/null; done <"$WORK/pids"
    fi
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ -x "$KILN" ] || fail replicas_kiln "$KILN is not executable (make first)"
[ -f "$MODEL/config.json" ] || fail replicas_model "$MODEL missing (set SHARED)"
command -v node >/dev/null || fail replicas_node "node is needed for the load client"

if ! command -v haproxy >/dev/null; then
    [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null || fail replicas_haproxy "haproxy missing: apt-get install haproxy (as root)"
    echo "# installing haproxy (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends haproxy || { apt-get update && apt-get install -y --no-install-recommends haproxy; }; } \
        >"$WORK/apt.log" 2>&1 || fail replicas_haproxy "apt-get install haproxy failed: $(tail -3 "$WORK/apt.log")"
fi

# Three free loopback ports, taken together so they differ.
read -r LB_PORT R1_PORT R2_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])') || fail replicas_ports "no free ports"

export KILN_LB_BIND=127.0.0.1:$LB_PORT KILN_REPLICA_1=127.0.0.1:$R1_PORT KILN_REPLICA_2=127.0.0.1:$R2_PORT
haproxy -c -q -f "$ROOT/deploy/haproxy.cfg" >"$WORK/haproxy-check.log" 2>&1 ||
    fail replicas_haproxy_config "$(cat "$WORK/haproxy-check.log")"
haproxy -db -f "$ROOT/deploy/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!

LB_URL=http://127.0.0.1:$LB_PORT KILN=$KILN MODEL=$MODEL WORK=$WORK R1_PORT=$R1_PORT R2_PORT=$R2_PORT \
    timeout 300 node "$ROOT/deploy/replicas-load.mjs"
rc=$?
if [ $rc -ne 0 ]; then
    echo "--- haproxy log (last 20 lines)"; tail -20 "$WORK/haproxy.log"
    for r in replica1 replica2; do echo "--- $r log (last 10 lines)"; tail -10 "$WORK/$r.log" 2>/dev/null; done
    [ $rc -eq 1 ] || echo "FAIL replicas_load: node exited $rc"
    exit 1
fi
kill -0 "$HAPROXY_PID" 2>/dev/null || fail replicas_haproxy_alive "haproxy died: $(tail -5 "$WORK/haproxy.log")"
exit 0
