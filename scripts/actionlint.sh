#!/usr/bin/env bash
# Run the pinned actionlint (the GitHub Actions workflow linter): `scripts/actionlint.sh <args>`. The first
# call builds it from its Go module into the cache Helm and the control plane use; later calls exec the
# cached binary. (The PyPI wrapper downloads its binary at build time, which a registry-only network forbids.)
set -euo pipefail

ACTIONLINT_VERSION="v1.7.12"
ACTIONLINT_MODULE="github.com/rhysd/actionlint"

cache_root="${DESKTOP_IMAGE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/desktop-image-operator}"
bin_dir="$cache_root/bin/actionlint-$ACTIONLINT_VERSION"
actionlint="$bin_dir/actionlint"

if [ ! -x "$actionlint" ]; then
  command -v go >/dev/null 2>&1 || { echo "actionlint.sh: a Go toolchain is needed (scripts/system-deps.sh)" >&2; exit 1; }
  mkdir -p "$bin_dir"
  exec 9>"$bin_dir/.lock"
  flock 9
  if [ ! -x "$actionlint" ]; then
    echo "actionlint.sh: building actionlint $ACTIONLINT_VERSION into $bin_dir (first use only)" >&2
    staging="$(mktemp -d "$bin_dir/.build.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    GOBIN="$staging" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" go install -ldflags "-s -w" \
      "$ACTIONLINT_MODULE/cmd/actionlint@$ACTIONLINT_VERSION" >&2
    mv "$staging/actionlint" "$actionlint"
    rm -rf "$staging"
    trap - EXIT
  fi
  flock -u 9
  exec 9>&-
fi

exec "$actionlint" "$@"
