#!/usr/bin/env bash
# tests/run.sh BUILD_DIR... — runs every test binary in BUILD_DIR/tests and every tests/cli/*.sh
# against BUILD_DIR/kiln, for each build dir given. Counts PASS/FAIL lines; a binary that crashes or
# exits non-zero without reporting a failure counts as one failure. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
export SHARED="${SHARED:-../shared}"
[ -d "$SHARED/models" ] || { echo "FAIL fixtures: $SHARED/models not found (set SHARED)"; echo "0 passed, 1 failed"; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0; failed=0
# The architectures' random-weight checkpoints are not stored: the shared script recreates them byte for
# byte (sha256-checked against their goldens) into ARCH_FIXTURES, where the tests read them.
export ARCH_FIXTURES="${ARCH_FIXTURES:-build/arch-fixtures}"
if ! sh "$SHARED/tools/make_arch_fixtures.sh" "$ARCH_FIXTURES" >/dev/null; then
    echo "FAIL arch fixtures: $SHARED/tools/make_arch_fixtures.sh $ARCH_FIXTURES failed"; failed=1
fi
log=$(mktemp); trap 'rm -f "$log"' EXIT

run_one() { # label, command...
    local label=$1; shift
    local t0=$SECONDS
    "$@" >"$log" 2>&1; local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $label: exited $rc without reporting a failure"; fi
    if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
        echo "--- $label (exit $rc)"; cat "$log"
    else
        echo "ok   $label: $p passed ($((SECONDS - t0))s)"
    fi
    passed=$((passed + p)); failed=$((failed + f))
}

for build in "$@"; do
    [ -x "$build/kiln" ] || { echo "FAIL $build/kiln missing (run make)"; failed=$((failed + 1)); continue; }
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        run_one "$t" "$t"
    done
    for s in tests/cli/*.sh; do
        [ -f "$s" ] || continue
        KILN="$build/kiln" run_one "$s [$build]" bash "$s"
    done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
