#!/usr/bin/env bash
# Build the MinIO server from the Go module proxy at a pinned commit, once per machine.
#
# MinIO's RELEASE.* tags are not semantic versions, so the module proxy serves them only as commit
# pseudo-versions; pinning the pseudo-version pins the exact source. The binary is cached outside the clone in
# $STOCKLAKE_CACHE/minio/<version>/minio, so a fresh clone on the same machine reuses it (the build takes
# several minutes on 2 cores).
set -euo pipefail

MINIO_MODULE_VERSION="${MINIO_MODULE_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
cache="${STOCKLAKE_CACHE:-$HOME/.cache/stocklake}"
dest="$cache/minio/$MINIO_MODULE_VERSION"

if [ -x "$dest/minio" ]; then
  echo "$dest/minio"
  exit 0
fi
command -v go >/dev/null || { echo "build_minio: Go is not installed (needed once to build MinIO)" >&2; exit 1; }
mkdir -p "$dest.tmp"
echo "build_minio: building github.com/minio/minio@$MINIO_MODULE_VERSION (once; several minutes)..." >&2
# CGO off gives a static binary; -trimpath keeps build paths out of it.
CGO_ENABLED=0 GOBIN="$dest.tmp" GOFLAGS="-trimpath" \
  go install "github.com/minio/minio@$MINIO_MODULE_VERSION" >&2
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest/minio"
