# Images of the local cluster (pause, CoreDNS, nettest): static binaries in FROM-scratch images
# built with podman (no runtime needed), saved as OCI archives cached by content hash, imported
# into the node's containerd. Sourced by cluster.sh.

PODMAN_ROOT="$SESSIONSTORE_CACHE/podman"   # own podman storage: leaves /var/lib/containers alone

podman_() {
  podman --root "$PODMAN_ROOT/root" --runroot "$PODMAN_ROOT/runroot" --storage-driver vfs "$@"
}

# build_image NAME BINARY ARGS_JSON: prints the archive path (built if missing)
# The archive name is keyed by the hash of the binary and the Containerfile.
build_image() {
  local image=$1 bin=$2 entry=$3
  local short; short=$(basename "${image%%:*}")
  local cf; cf=$(printf 'FROM scratch\nCOPY %s /%s\nENTRYPOINT %s\n' "$(basename "$bin")" "$(basename "$bin")" "$entry")
  local hash; hash=$( (sha256sum < "$bin"; echo "$image"; echo "$cf") | sha256sum | cut -c1-16)
  local out="$IMAGES_DIR/$short-$hash.tar"
  if [ ! -s "$out" ]; then
    step "podman build $image"
    local ctx; ctx=$(mktemp -d)
    cp "$bin" "$ctx/"
    echo "$cf" > "$ctx/Containerfile"
    mkdir -p "$IMAGES_DIR"
    podman_ build -q -f "$ctx/Containerfile" -t "$image" "$ctx" >/dev/null
    podman_ save --format oci-archive -o "$out.tmp" "$image" 2>/dev/null
    podman_ rmi -f "$image" >/dev/null 2>&1 || true
    mv "$out.tmp" "$out"
    rm -rf "$ctx"
    # older archives of this (cluster-internal) image are of no further use
    find "$IMAGES_DIR" -maxdepth 1 -name "$short-*.tar" ! -name "$short-$hash.tar" -delete
  fi
  echo "$out"
}

build_cluster_images() {
  local tools; tools=$(tools_dir)
  PAUSE_ARCHIVE=$(build_image "$PAUSE_IMAGE" "$tools/pause" '["/pause"]')
  COREDNS_ARCHIVE=$(build_image "$COREDNS_IMAGE" "$COREDNS_DIR/coredns" '["/coredns"]')
  NETTEST_ARCHIVE=$(build_image "$NETTEST_IMAGE" "$tools/nettest" '["/nettest"]')
}

# import_archive ARCHIVE [NAME]: imports an OCI (or docker) archive into containerd's k8s.io
# namespace under the reference written in the archive (podman writes the fully qualified name);
# with NAME, the image is also tagged NAME. A short NAME like sessionstore/operator:0.1.0 is
# qualified with docker.io/ as the kubelet does.
import_archive() {
  local archive=$1 name=${2:-} ref
  [ -f "$archive" ] || die "no such archive: $archive"
  ctr_ images import "$archive" >/dev/null
  if [ -n "$name" ]; then
    case ${name%%/*} in *.*|*:*|localhost) ;; *) name="docker.io/$name" ;; esac
    case $name in docker.io/*/*) ;; docker.io/*) name="docker.io/library/${name#docker.io/}" ;; esac
    ref=$(tar -xOf "$archive" index.json 2>/dev/null | grep -o '"org.opencontainers.image.ref.name":"[^"]*"' | head -1 | cut -d'"' -f4)
    [ -n "$ref" ] || die "$archive names no image (org.opencontainers.image.ref.name); cannot tag $name"
    [ "$ref" = "$name" ] || ctr_ images tag --force "$ref" "$name" >/dev/null
  fi
}

# imports an image unless containerd already has it with the same content
import_cluster_images() {
  local pair image archive have want
  for pair in "$PAUSE_IMAGE=$PAUSE_ARCHIVE" "$COREDNS_IMAGE=$COREDNS_ARCHIVE" "$NETTEST_IMAGE=$NETTEST_ARCHIVE"; do
    image=${pair%%=*}; archive=${pair#*=}
    want=$(tar -xOf "$archive" index.json | grep -o '"digest":"sha256:[0-9a-f]*"' | head -1 | cut -d'"' -f4)
    have=$(ctr_ images ls "name==$image" 2>/dev/null | awk 'NR>1 {print $3}')
    if [ "$have" != "$want" ]; then
      import_archive "$archive" || { sleep 2; import_archive "$archive"; }
      info "imported $image"
    fi
  done
}
