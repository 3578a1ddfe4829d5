# lib.sh — helpers for CLI tests (sourced). $KILN is the binary under test, $SHARED the fixtures.
KILN="${KILN:-build/kiln}"
SHARED="${SHARED:-../shared}"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: ${2:-}"; }
# check NAME CONDITION-COMMAND... : PASS if the command succeeds.
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "$*"; fi; }
