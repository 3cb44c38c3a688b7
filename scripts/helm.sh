#!/usr/bin/env bash
# Run the pinned Helm: `scripts/helm.sh <helm args>`. The first call builds it from its Go module
# (through the Go module proxy) into a cache outside the repository whose path carries the version;
# later calls exec the cached binary. `scripts/helm.sh --print-path` builds it and prints its path.
#
# Cache: $DESKTOP_IMAGE_OPERATOR_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/desktop-image-operator
# (the same root as the control plane binaries), then bin/helm-<version>/helm.
set -euo pipefail

HELM_VERSION="v4.3.1"
HELM_MODULE="helm.sh/helm/v4"

cache_root="${DESKTOP_IMAGE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/desktop-image-operator}"
bin_dir="$cache_root/bin/helm-$HELM_VERSION"
helm="$bin_dir/helm"

if [ ! -x "$helm" ]; then
  command -v go >/dev/null 2>&1 || { echo "helm.sh: a Go toolchain is needed (scripts/system-deps.sh)" >&2; exit 1; }
  mkdir -p "$bin_dir"
  # Concurrent first calls (parallel tests) build once: the others wait for the lock, then find the binary.
  exec 9>"$bin_dir/.lock"
  flock 9
  if [ ! -x "$helm" ]; then
    echo "helm.sh: building helm $HELM_VERSION into $bin_dir (first use only)" >&2
    staging="$(mktemp -d "$bin_dir/.build.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    # Helm's own release build stamps the version the same way; without it `helm version` says v4.3.
    GOBIN="$staging" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath" go install \
      -ldflags "-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION" \
      "$HELM_MODULE/cmd/helm@$HELM_VERSION" >&2
    mv "$staging/helm" "$helm"
    rm -rf "$staging"
    trap - EXIT
  fi
  flock -u 9
  exec 9>&-
fi

if [ "${1:-}" = "--print-path" ]; then
  echo "$helm"
  exit 0
fi
exec "$helm" "$@"
