#!/usr/bin/env bash
# Builds the images the end-to-end tests run, from files on this machine only (no registry is
# reachable, so nothing is pulled; every image is FROM scratch):
#
#   swarm-lb/haproxy:2.6-local   Debian's haproxy and the libraries ldd lists, laid out like the
#                                official haproxy image (stands in for haproxy:<version>)
#   swarm-lb/swarm-lb:local      the swarm-lb binary, static (crt-static)
#   swarm-lb/testapp:1, :2       integration/testapp, static; VERSION=1 / VERSION=2
#   swarm-lb/busybox:local       busybox-static: sh, wget, nc for probes inside overlay networks
#
# Usage: scripts/images.sh [haproxy] [swarm-lb] [testapp] [busybox]     (no argument: all)
#
# Idempotent: each image carries a label with a hash of its build context; an image whose hash
# matches is not rebuilt. The static binaries are built by cargo (incremental) in their own
# target dir so that they do not evict the debug build.
#
# Environment:
#   DOCKER                       docker client (default /usr/bin/docker, the one matching the engine)
#   SWARM_LB_STATIC_TARGET_DIR   cargo target dir for the static builds (default <repo>/target/static)
#   SWARM_LB_IMAGES_FORCE=1      rebuild even when up to date
#   HAPROXY_BIN                  haproxy binary to package (default /usr/sbin/haproxy)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
STATIC_TARGET_DIR=${SWARM_LB_STATIC_TARGET_DIR:-$REPO/target/static}
STAGE=$REPO/target/images
FORCE=${SWARM_LB_IMAGES_FORCE:-0}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
BUSYBOX_BIN=${BUSYBOX_BIN:-/bin/busybox}
TRIPLE=x86_64-unknown-linux-gnu
LABEL=org.swarm-lb.context-hash
# The classic builder: present in every 20.10 engine, no buildx plugin needed.
export DOCKER_BUILDKIT=0

log() { printf 'images: %s\n' "$*" >&2; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

# Hash of a staged context (paths, modes, link targets, contents) plus extra build inputs.
context_hash() {
    local dir=$1; shift
    (
        cd "$dir"
        find . \( -type f -o -type l -o -type d \) -printf '%p %m %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
        printf '%s\n' "$@"
    ) | sha256sum | cut -d' ' -f1
}

# build_image TAG CONTEXT_DIR [--build-arg K=V ...]
build_image() {
    local tag=$1 ctx=$2; shift 2
    local hash current start
    hash=$(context_hash "$ctx" "$@")
    current=$("$DOCKER" image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$tag" 2>/dev/null || true)
    if [[ $FORCE != 1 && $current == "$hash" ]]; then
        log "$tag is up to date"
        return
    fi
    start=$SECONDS
    "$DOCKER" build -q --label "$LABEL=$hash" "$@" -t "$tag" "$ctx" >/dev/null
    log "$tag built in $((SECONDS - start))s ($("$DOCKER" image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec))"
}

# A fresh staging dir holding the image's Dockerfile.
stage() {
    local name=$1 dir=$STAGE/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$REPO/images/$name/Dockerfile" "$dir/"
    printf '%s\n' "$dir"
}

STATIC_BUILT=0
static_binaries() {
    [[ $STATIC_BUILT == 1 ]] && return
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
    [[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || die "static glibc missing: apt-get install libc6-dev"
    local start=$SECONDS
    log "cargo build --release --target $TRIPLE (crt-static) into $STATIC_TARGET_DIR"
    # --target keeps the crt-static flag off build scripts and proc macros (they must stay dynamic).
    (
        cd "$REPO"
        unset CARGO_ENCODED_RUSTFLAGS
        CARGO_TARGET_DIR=$STATIC_TARGET_DIR RUSTFLAGS='-C target-feature=+crt-static' \
            cargo build --quiet --release --target "$TRIPLE" -p swarm-lb -p testapp --bins
    )
    local bin
    for bin in swarm-lb testapp; do
        if readelf -d "$STATIC_TARGET_DIR/$TRIPLE/release/$bin" | grep -q NEEDED; then
            die "$bin is not statically linked"
        fi
    done
    log "static binaries ready in $((SECONDS - start))s"
    STATIC_BUILT=1
}

build_haproxy() {
    [[ -x $HAPROXY_BIN ]] || die "$HAPROXY_BIN not found: apt-get install haproxy"
    local version dir lib
    version=$("$HAPROXY_BIN" -v | sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\).*/\1/p')
    [[ -n $version ]] || die "cannot read the version of $HAPROXY_BIN"
    dir=$(stage haproxy)
    mkdir -p "$dir/rootfs/usr/local/sbin" "$dir/rootfs/usr/local/etc/haproxy" "$dir/rootfs/etc" \
        "$dir/home"
    cp "$HAPROXY_BIN" "$dir/rootfs/usr/local/sbin/haproxy"
    # Every library at the path ldd resolved it to (the dynamic loader included); -L copies the
    # file behind each symlink under the symlink's name.
    for lib in $(ldd "$HAPROXY_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        cp -L --parents "$lib" "$dir/rootfs/"
    done
    cat >"$dir/rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
haproxy:x:99:99:haproxy:/var/lib/haproxy:/sbin/nologin
EOF
    cat >"$dir/rootfs/etc/group" <<'EOF'
root:x:0:
haproxy:x:99:
EOF
    printf 'hosts: files dns\n' >"$dir/rootfs/etc/nsswitch.conf"
    build_image "swarm-lb/haproxy:$version-local" "$dir"
}

build_swarm_lb() {
    static_binaries
    local dir
    dir=$(stage swarm-lb)
    cp "$STATIC_TARGET_DIR/$TRIPLE/release/swarm-lb" "$dir/"
    build_image swarm-lb/swarm-lb:local "$dir"
}

build_testapp() {
    static_binaries
    local dir version
    dir=$(stage testapp)
    cp "$STATIC_TARGET_DIR/$TRIPLE/release/testapp" "$dir/"
    for version in 1 2; do
        build_image "swarm-lb/testapp:$version" "$dir" --build-arg "VERSION=$version"
    done
}

build_busybox() {
    [[ -x $BUSYBOX_BIN ]] || die "$BUSYBOX_BIN not found: apt-get install busybox-static"
    if readelf -d "$BUSYBOX_BIN" 2>/dev/null | grep -q NEEDED; then
        die "$BUSYBOX_BIN is dynamically linked: apt-get install busybox-static"
    fi
    local dir
    dir=$(stage busybox)
    cp "$BUSYBOX_BIN" "$dir/busybox"
    build_image swarm-lb/busybox:local "$dir"
}

main() {
    "$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers at ${DOCKER_HOST:-/var/run/docker.sock} (scripts/setup.sh starts one)"
    local targets=("$@") start=$SECONDS target
    ((${#targets[@]})) || targets=(haproxy swarm-lb testapp busybox)
    for target in "${targets[@]}"; do
        case $target in
        haproxy) build_haproxy ;;
        swarm-lb) build_swarm_lb ;;
        testapp) build_testapp ;;
        busybox) build_busybox ;;
        *) die "unknown image $target (haproxy, swarm-lb, testapp, busybox)" ;;
        esac
    done
    log "done in $((SECONDS - start))s"
}

main "$@"
