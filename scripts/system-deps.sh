#!/usr/bin/env bash
# Install the non-Python tools the project needs when they are missing: a Go toolchain (it fetches the
# exact version go.mod asks for by itself) and Python's venv module. Debian packages; root or sudo.
set -euo pipefail

missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v git >/dev/null 2>&1 || missing+=(git)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
