#!/usr/bin/env bash
# replicas.sh — the suite's run of deploy/replicas-test.sh: two `kiln serve` replicas behind HAProxy
# (installed from Debian when missing), affinity, 64 clients for 30 s through a SIGKILL and a SIGTERM
# drain with zero failed requests. It prints its own PASS/FAIL lines.
#
# Release build only: it is a 30-second load test whose point is the balancer's behaviour, not kiln's
# memory safety, and under ASan the replicas are too slow for its timeline (measured on the 2-core CI
# machine: 411 answers in 30 s instead of about 4000, a 14 s drain, the run 71 s instead of 36). The
# server-side pieces it relies on (/health loading / ok / draining, the drain finishing in-flight answers)
# run under ASan too, in tests/test_serve_life.c.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KILN="${KILN:-build/kiln}"
case "$KILN" in
*asan*) echo "# replicas: not run against $KILN (release build only, see the comment above)"; exit 0 ;;
esac
KILN=$KILN SHARED="${SHARED:-../shared}" exec bash "$ROOT/deploy/replicas-test.sh"
