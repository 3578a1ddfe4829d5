#!/usr/bin/env bash
# A fresh machine in one command (issue 14): deps/install.sh finds what is missing from the ONE list
# (deps/debian-packages.txt) and, as root, apt-get installs it; as another user it stops with the exact
# apt-get line; make stops there too, before any compiler error. Nothing is installed or removed here:
# missing packages are faked (pkg-config pointed at an empty directory, a PATH without the tools) and so
# are `id` and `apt-get`. The real test, removing the -dev packages of a machine, is a manual one.
source "$(dirname "$0")/lib.bash"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

# This machine has everything: silent, exit 0 (and cheap).
out=$("$ROOT/deps/install.sh" test 2>&1); rc=$?
check present_is_silent bash -c '[ "$1" = 0 ] && [ -z "$2" ]' _ "$rc" "$out"

# A fake machine: only the tools the script and make need; pkg-config finds no module; fake id / apt-get.
fake() { # uid, apt-get exit status
    rm -rf "$TMP/bin"; mkdir -p "$TMP/bin" "$TMP/empty"
    for t in bash env dirname pkg-config awk make sh cat; do ln -s "$(command -v $t)" "$TMP/bin/$t"; done
    printf '#!/bin/sh\necho %s\n' "$1" >"$TMP/bin/id"
    printf '#!/bin/sh\necho "$@" >>"%s/apt.log"\nexit %s\n' "$TMP" "$2" >"$TMP/bin/apt-get"
    chmod +x "$TMP/bin/id" "$TMP/bin/apt-get"; rm -f "$TMP/apt.log"
}
in_fake() { env -i PATH="$TMP/bin" PKG_CONFIG_LIBDIR="$TMP/empty" PKG_CONFIG_PATH= HOME="$TMP" "$@"; }
BUILD_PKGS="build-essential libjansson-dev libpcre2-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev libedit-dev libicu-dev"

fake 1000 0
in_fake "$ROOT/deps/install.sh" build >"$TMP/o" 2>"$TMP/e"; rc=$?
check nonroot_exits_1 [ "$rc" = 1 ]
check nonroot_prints_exact_line grep -qx "  apt-get install -y --no-install-recommends $BUILD_PKGS" "$TMP/e"
check nonroot_installs_nothing [ ! -e "$TMP/apt.log" ]
in_fake "$ROOT/deps/install.sh" test >"$TMP/o" 2>"$TMP/e"
check nonroot_test_adds_test_tools grep -qx "  apt-get install -y --no-install-recommends $BUILD_PKGS python3 nodejs npm openmpi-bin libopenmpi-dev" "$TMP/e"

# make stops at the same step, with the same line and no compiler output (demo and test alike).
for goal in demo test all; do
    in_fake make -C "$ROOT" -j2 $goal >"$TMP/o" 2>"$TMP/e"; rc=$?
    check "make_${goal}_stops_with_apt_line" bash -c '[ "$1" != 0 ] && grep -q "^  apt-get install -y --no-install-recommends build-essential" "$2" && ! grep -qiE "error:|\.h: No such file" "$2" "$3"' _ "$rc" "$TMP/e" "$TMP/o"
done

fake 0 0
in_fake "$ROOT/deps/install.sh" build >"$TMP/o" 2>"$TMP/e"; rc=$?
check root_installs [ "$rc" = 0 ]
check root_runs_apt_get bash -c 'head -1 "$1" | grep -q "^update" && sed -n 2p "$1" | grep -qx "install -y --no-install-recommends $2 -qq"' _ "$TMP/apt.log" "$BUILD_PKGS"

fake 0 100
in_fake "$ROOT/deps/install.sh" build >"$TMP/o" 2>"$TMP/e"; rc=$?
check root_apt_failure_is_an_error bash -c '[ "$1" = 1 ] && grep -q "failed" "$2"' _ "$rc" "$TMP/e"

# One list: the Makefile's libraries are the pc rows of the list (nothing spelled out twice).
check makefile_reads_the_list grep -q 'deps/debian-packages.txt' "$ROOT/Makefile"
check ci_runs_the_same_step grep -q '^deps/install.sh test' "$ROOT/.ci/run"
