#!/usr/bin/env bash
# Run the pinned promtool (Prometheus' rule checker and rule unit-test runner): `scripts/promtool.sh <args>`.
# The first call builds it from the Prometheus Go module into the cache Helm and actionlint use; later calls
# exec the cached binary. `scripts/promtool.sh --print-path` builds it and prints its path.
#
# Cache: $DESKTOP_IMAGE_OPERATOR_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/desktop-image-operator, then
# bin/promtool-<version>/promtool.
set -euo pipefail

# Prometheus' Go module carries its releases as v0.<major><minor>.<patch>: v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_MODULE_VERSION="v0.316.0"
PROMETHEUS_VERSION="3.16.0"
PROMETHEUS_MODULE="github.com/prometheus/prometheus"

cache_root="${DESKTOP_IMAGE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/desktop-image-operator}"
bin_dir="$cache_root/bin/promtool-$PROMETHEUS_MODULE_VERSION"
promtool="$bin_dir/promtool"

if [ ! -x "$promtool" ]; then
  command -v go >/dev/null 2>&1 || { echo "promtool.sh: a Go toolchain is needed (scripts/system-deps.sh)" >&2; exit 1; }
  mkdir -p "$bin_dir"
  # Concurrent first calls (parallel tests) build once: the others wait for the lock, then find the binary.
  exec 9>"$bin_dir/.lock"
  flock 9
  if [ ! -x "$promtool" ]; then
    echo "promtool.sh: building promtool $PROMETHEUS_VERSION into $bin_dir (first use only)" >&2
    staging="$(mktemp -d "$bin_dir/.build.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    # Prometheus' release build stamps the version the same way; without it `promtool --version` is empty.
    GOBIN="$staging" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" go install \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
      "$PROMETHEUS_MODULE/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >&2
    mv "$staging/promtool" "$promtool"
    rm -rf "$staging"
    trap - EXIT
  fi
  flock -u 9
  exec 9>&-
fi

if [ "${1:-}" = "--print-path" ]; then
  echo "$promtool"
  exit 0
fi
exec "$promtool" "$@"
