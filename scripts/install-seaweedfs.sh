#!/usr/bin/env bash
# Builds SeaweedFS's `weed` binary once per machine: the remote-store tests (test/cache/remote*.test.ts)
# start it on loopback as a real S3-compatible server. The binary is cached outside the clone under
# ${ANNEAL_CACHE_DIR:-~/.cache/anneal}/seaweedfs-<version>/bin/weed, keyed by the module version pinned
# here; a second run only checks that it is there. Needs Go (>= 1.25; /usr/local/go/bin/go or `go` on
# PATH) and the Go module proxy. `npm test` runs this through scripts/install-test-deps.sh.
set -euo pipefail

version="v0.0.0-20261109003541-7506e5f91cd6"
cache_root="${ANNEAL_CACHE_DIR:-$HOME/.cache/anneal}"
dir="$cache_root/seaweedfs-$version"
weed="$dir/bin/weed"

if [ -x "$weed" ] && [ -f "$dir/.anneal-ready" ]; then
  echo "test deps: seaweedfs $version already built ($weed)"
  exit 0
fi

go_bin=""
if [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go
elif command -v go >/dev/null 2>&1; then go_bin="$(command -v go)"
else
  echo "test deps: building SeaweedFS (the remote-store tests' S3 server) needs Go: install Go >= 1.25 (https://go.dev/dl/) and run npm test again" >&2
  exit 1
fi

echo "test deps: building seaweedfs $version with $go_bin (once per machine; several minutes)"
mkdir -p "$dir"
# Build into a scratch directory and move the finished binary into place, so an interrupted build
# never leaves a half-written weed where the tests would find it.
scratch="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
# SeaweedFS's go.mod has replace directives, so `go install module@version` refuses it: fetch the
# module's source through the proxy, then build ./weed inside it (where the replaces apply).
module_dir="$("$go_bin" mod download -json "github.com/seaweedfs/seaweedfs@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$module_dir" ] || [ ! -d "$module_dir/weed" ]; then
  echo "test deps: could not download github.com/seaweedfs/seaweedfs@$version from the Go module proxy" >&2
  exit 1
fi
cp -r "$module_dir" "$scratch/src"
chmod -R u+w "$scratch/src"
(cd "$scratch/src" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 nice -n 10 "$go_bin" build -o "$scratch/weed" ./weed)
mkdir -p "$dir/bin"
mv -f "$scratch/weed" "$weed"
echo "$version" > "$dir/.anneal-ready"
echo "test deps: seaweedfs built at $weed"
