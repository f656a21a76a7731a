#!/usr/bin/env bash
# End-to-end check of containerd on snapfs: builds a small OCI image from
# busybox-static (no network needed), imports it with the snapfs
# snapshotter, runs a container that prints a line and writes a file, then
# removes container and image and checks that snapfs holds nothing more.
# CONTAINERD_ADDRESS: containerd's socket (/run/containerd/containerd.sock).
set -euo pipefail

address=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
namespace=snapfs-check
image=snapfs.check/busybox:latest
ctr() { command ctr --address "$address" --namespace "$namespace" "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layer/bin" "$work/oci/blobs/sha256"
cp /bin/busybox "$work/layer/bin/busybox"
for applet in sh echo cat; do ln -s busybox "$work/layer/bin/$applet"; done
tar -C "$work/layer" --numeric-owner --owner=0 --group=0 -cf "$work/layer.tar" .

blob() { # stores file $1 as a blob; prints "digest size"
  local hex
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$work/oci/blobs/sha256/$hex"
  echo "sha256:$hex $(stat -c %s "$1")"
}
read -r layer_digest layer_size < <(blob "$work/layer.tar")
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["%s"]}}' "$layer_digest" >"$work/config.json"
read -r config_digest config_size < <(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$image" >"$work/oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
tar -C "$work/oci" -cf "$work/image.tar" oci-layout index.json blobs

echo "check: importing $image onto snapfs"
ctr images import --snapshotter snapfs "$work/image.tar"
echo "check: running a container on snapfs"
run() { ctr run --rm --snapshotter snapfs "$image" snapfs-check /bin/sh -c 'echo hello from snapfs > /greeting && cat /greeting' 2>"$work/run.err"; }
# containerd 1.6's shim reaps its children on SIGCHLD while it waits for the
# mount helper itself, so the wait can end in ECHILD; it then unmounts and
# mounts again, and gives up after ten. This hits every FUSE snapshotter's
# helper (fuse-overlayfs's as often as snapfs's), most on a busy machine:
# one more start is the remedy, and any other failure is a failure.
if ! out=$(run); then
  grep -q 'failed with ECHILD' "$work/run.err" || { cat "$work/run.err" >&2; exit 1; }
  echo "check: containerd's shim lost the mount helper's exit status ten times (ECHILD); starting the container once more"
  out=$(run) || { cat "$work/run.err" >&2; exit 1; }
fi
[[ $out == "hello from snapfs" ]] || { echo "check: the container printed '$out'" >&2; exit 1; }
echo "check: $out"
ctr images rm --sync "$image" >/dev/null
left=$(ctr snapshots --snapshotter snapfs ls | tail -n +2)
[[ -z $left ]] || { echo "check: snapshots left behind: $left" >&2; exit 1; }
echo "check: passed"
