#!/usr/bin/env bash
# Builds the sessionstore container images on a machine with no registry and no Docker engine:
# release binaries are built on the host, linked statically (glibc, crt-static), and podman puts
# each into a FROM scratch image that runs as UID/GID 65532. The images are tagged
# docker.io/sessionstore/<image>:<crate version>, saved as OCI archives under
# ${SESSIONSTORE_CACHE}/images/<image>-<content hash>.tar, and the archive paths are printed on
# stdout, one per line (progress goes to stderr), for `e2e/cluster/cluster.sh load-image`.
#
# Usage: hack/build-images.sh [store-node] [operator]     (default: both)
#        SESSIONSTORE_STATIC=0 hack/build-images.sh ...     (dynamic binary + its glibc libraries)
#
# The archive name is a hash of everything in the image (files, modes, Containerfile, tag), so an
# unchanged binary reuses the archive without calling podman, and a changed one gets a new name.
# Conventional Docker builds of the same images: images/*.Dockerfile.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# image name -> cargo package, binary, exposed ports.
declare -A PACKAGE=([store-node]=store-node [operator]=sessionstore-operator)
declare -A BINARY=([store-node]=store-node [operator]=sessionstore-operator)
declare -A PORTS=([store-node]="6379 7379 8080" [operator]="8080")
RUN_AS=65532
KEEP_ARCHIVES=3

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(store-node operator)
for image in "${images[@]}"; do
  [ -n "${PACKAGE[$image]:-}" ] || { echo "build-images.sh: unknown image '$image' (store-node, operator)" >&2; exit 2; }
done

version="$(awk '/^\[workspace.package\]/{p=1; next} /^\[/{p=0} p && /^version *=/{gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit}' Cargo.toml)"
[ -n "$version" ] || { echo "build-images.sh: no [workspace.package] version in Cargo.toml" >&2; exit 1; }

command -v podman >/dev/null 2>&1 || apt_install podman >&2

# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros (which cannot be
# static) and puts these artifacts in their own directory, so they never invalidate the ordinary
# release build in the shared target dir.
target="$(rustc -vV | sed -n 's/^host: //p')"
packages=()
for image in "${images[@]}"; do packages+=(-p "${PACKAGE[$image]}"); done
# SESSIONSTORE_STATIC=0 links dynamically instead; the image then carries the glibc libraries
# ldd finds (copy_runtime_libraries below).
rustflags="${RUSTFLAGS:-}"
[ "${SESSIONSTORE_STATIC:-1}" = 0 ] || rustflags+=" -C target-feature=+crt-static"
step "cargo build --release --target $target ${packages[*]} (RUSTFLAGS=${rustflags# })" >&2
build_start=$(date +%s)
RUSTFLAGS="$rustflags" cargo build --release --target "$target" "${packages[@]}" >&2
echo "cargo build took $(( $(date +%s) - build_start ))s" >&2

mkdir -p "$SESSIONSTORE_CACHE/images"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# copy_runtime_libraries BINARY ROOTFS: when BINARY is dynamically linked, copies exactly the shared
# libraries ldd resolves for it (and the dynamic loader) into ROOTFS at the same paths.
copy_runtime_libraries() {
  local binary="$1" rootfs="$2" lib
  if ! readelf -l "$binary" | grep -q 'INTERP'; then
    echo "  $(basename "$binary"): statically linked, no shared libraries needed" >&2
    return 0
  fi
  echo "  $(basename "$binary"): dynamically linked; copying its shared libraries" >&2
  # ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)".
  for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    echo "    $lib" >&2
  done
}

for image in "${images[@]}"; do
  binary_name="${BINARY[$image]}"
  binary="$CARGO_TARGET_DIR/$target/release/$binary_name"
  ref="docker.io/sessionstore/$image:$version"
  step "image $ref" >&2

  context="$work/$image"
  rootfs="$context/rootfs"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  install -m 0755 "$binary" "$rootfs/usr/local/bin/$binary_name"
  copy_runtime_libraries "$binary" "$rootfs"
  # The same user table as distroless: tools that map the UID to a name find "nonroot".
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n' "$RUN_AS" "$RUN_AS" > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%d:\n' "$RUN_AS" > "$rootfs/etc/group"
  # Static glibc resolves names itself (files, then DNS through the pod's /etc/resolv.conf, with
  # its search domains); say so explicitly, as distroless does.
  printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
  # CA bundle for TLS clients that use the system roots (the operator's API client uses the
  # service account's CA; this is for anything else).
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  chmod 1777 "$rootfs/tmp"

  expose=""
  for port in ${PORTS[$image]}; do expose+="EXPOSE $port"$'\n'; done
  cat > "$context/Containerfile" <<CONTAINERFILE
FROM scratch
COPY rootfs/ /
USER $RUN_AS:$RUN_AS
$expose
LABEL org.opencontainers.image.title="$image" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/$binary_name"]
CONTAINERFILE

  hash="$(
    cd "$context"
    {
      echo "$ref"
      find . -printf '%p %m %y\n' | LC_ALL=C sort
      find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
  )"
  archive="$SESSIONSTORE_CACHE/images/$image-$hash.tar"

  if [ -f "$archive" ]; then
    echo "  unchanged: $archive" >&2
  else
    # --timestamp 0: identical contents give an identical image, whenever it is built.
    podman build --quiet --timestamp 0 --tag "$ref" --file "$context/Containerfile" "$context" >&2
    rm -f "$archive.partial"
    podman save --quiet --format oci-archive --output "$archive.partial" "$ref" >&2
    # containerd's `ctr images import` names the image after this annotation.
    saved_ref="$(tar -xOf "$archive.partial" index.json | python3 -c 'import json, sys; print(json.load(sys.stdin)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])')"
    [ "$saved_ref" = "$ref" ] || { echo "build-images.sh: $archive.partial is named '$saved_ref', not $ref" >&2; exit 1; }
    mv "$archive.partial" "$archive"
    # Older archives of this image are only cache; keep the newest few.
    ls -1t "$SESSIONSTORE_CACHE/images/$image"-*.tar | tail -n +$((KEEP_ARCHIVES + 1)) | xargs -r rm -f
  fi
  echo "  $(du -h "$archive" | cut -f1) $archive" >&2
  echo "$archive"
done
