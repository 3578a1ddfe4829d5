#!/usr/bin/env bash
# deps/install.sh [build|test] — makes sure what kiln needs is installed (the list: debian-packages.txt).
#
# Cheap when nothing is missing (pkg-config --exists, command -v, one python3 -c): it prints nothing and
# exits 0. Otherwise, as root it runs apt-get install for the missing packages; as another user it prints
# the exact apt-get line to run and exits 1, so make stops before any compiler error about a header.
# `test` checks the build packages and the test ones. The Makefile runs it before building.
set -u
scope=${1:-build}
case "$scope" in build | test) ;; *) echo "usage: deps/install.sh [build|test]" >&2; exit 2 ;; esac
list="$(dirname "$0")/debian-packages.txt"

# python3-* packages serve Debian's own interpreter, which may not be the first python3 on PATH (pyenv).
debian_python=/usr/bin/python3
[ -x "$debian_python" ] || debian_python=python3

present() { # kind probe
    case "$1" in
    tool) command -v "$2" >/dev/null 2>&1 ;;
    pc) command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$2" ;;
    py) "$debian_python" -c "import $2" >/dev/null 2>&1 ;;
    *) echo "deps/install.sh: $list: unknown kind '$1'" >&2; return 1 ;;
    esac
}

missing=()
while read -r s kind probe pkg _; do
    case "$s" in '' | '#'*) continue ;; esac
    [ "$s" = test ] && [ "$scope" = build ] && continue
    present "$kind" "$probe" && continue
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done <"$list"
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
    echo "kiln: missing Debian packages for '$scope': ${missing[*]}" >&2
    echo "kiln: run this as root (or with sudo), then make again:" >&2
    echo "  $line" >&2
    exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "kiln: missing ${missing[*]}, and no apt-get to install them" >&2; exit 1; }
echo "kiln: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && $line -qq >/dev/null || { echo "kiln: $line failed" >&2; exit 1; }
