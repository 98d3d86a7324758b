#!/usr/bin/env bash
# Builds the images the end-to-end tests run, from files on this machine only (no registry is
# reachable, so nothing is pulled; every image is FROM scratch):
#
#   swarm-lb/haproxy:2.6-local   Debian's haproxy and the libraries ldd lists, laid out like the
#                                official haproxy image (stands in for haproxy:<version>)
#   swarm-lb/haproxy:3.0-local   the same layout from Debian's packages of the later LTS lines,
#   swarm-lb/haproxy:3.2-local   at the versions pinned in HAPROXY_PINS below (downloaded once
#   swarm-lb/haproxy:3.4-local   from deb.debian.org with a private apt configuration; the
#                                host's apt is not touched)
#   swarm-lb/swarm-lb:local      the swarm-lb binary, static (crt-static), and Debian's CA bundle
#   swarm-lb/testapp:1, :2       integration/testapp, static; VERSION=1 / VERSION=2
#   swarm-lb/busybox:local       busybox-static: sh, wget, nc for probes inside overlay networks
#
# Usage: scripts/images.sh [haproxy] [haproxy-2.6|3.0|3.2|3.4] [swarm-lb] [testapp] [busybox]
#        (no argument: all; `haproxy` is every version)
#
# Idempotent: each image carries a label with a hash of its build context; an image whose hash
# matches is not rebuilt. Each Debian HAProxy is unpacked once into target/haproxy/<line>/rootfs
# (kept while its pin and recipe are unchanged, so a rerun needs no network); beside it,
# target/haproxy/<line>/haproxy runs that rootfs' haproxy on this host (chroot in a private mount
# namespace, see haproxy_wrapper): the real-HAProxy tests take it as $HAPROXY. The static binaries are built by cargo (incremental) in their own
# target dir so that they do not evict the debug build.
#
# Environment:
#   DOCKER                       docker client (default /usr/bin/docker, the one matching the engine)
#   SWARM_LB_STATIC_TARGET_DIR   cargo target dir for the static builds (default <repo>/target/static)
#   SWARM_LB_IMAGES_FORCE=1      rebuild even when up to date
#   HAPROXY_BIN                  haproxy binary to package (default /usr/sbin/haproxy)
#   SWARM_LB_IMAGE               tag of the swarm-lb image (default swarm-lb/swarm-lb:local); the
#                                e2e suite runs the same variable, so two worktrees can test at once
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
STATIC_TARGET_DIR=${SWARM_LB_STATIC_TARGET_DIR:-$REPO/target/static}
STAGE=$REPO/target/images
FORCE=${SWARM_LB_IMAGES_FORCE:-0}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
BUSYBOX_BIN=${BUSYBOX_BIN:-/bin/busybox}
TRIPLE=x86_64-unknown-linux-gnu
HAPROXY_CACHE=$REPO/target/haproxy
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# line, suites the packages come from (the first holds haproxy), haproxy's pinned Debian version.
# Experimental holds only haproxy itself: its libraries come from sid. A pin that Debian no longer
# ships is an error naming what it ships now; move the pin deliberately (and rerun the tests).
# Libraries are the suite's current ones (sid moves daily: pinning them would break weekly); the
# exact set is written to target/haproxy/<line>/packages and into the image's context hash.
HAPROXY_PINS=(
    "3.0 trixie 3.0.11-1+deb13u4"
    "3.2 sid 3.2.26-1"
    "3.4 experimental,sid 3.4.7-1"
)
# Bump when the rootfs recipe changes: cached rootfs dirs with another value are rebuilt.
ROOTFS_RECIPE=1
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

# A fresh staging dir NAME holding the Dockerfile of images/IMAGE (default NAME).
stage() {
    local name=$1 image=${2:-$1} dir=$STAGE/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$REPO/images/$image/Dockerfile" "$dir/"
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

# The files the official image has beside the binary: users root and haproxy (uid/gid 99).
haproxy_etc() {
    local root=$1
    mkdir -p "$root/etc"
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
haproxy:x:99:99:haproxy:/var/lib/haproxy:/sbin/nologin
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
haproxy:x:99:
EOF
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# 2.6: the host's own package (scripts/setup.sh installs it; the 2.6 tests run it directly).
build_haproxy_host() {
    [[ -x $HAPROXY_BIN ]] || die "$HAPROXY_BIN not found: apt-get install haproxy"
    local version dir lib
    version=$("$HAPROXY_BIN" -v | sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\).*/\1/p')
    [[ -n $version ]] || die "cannot read the version of $HAPROXY_BIN"
    dir=$(stage haproxy)
    mkdir -p "$dir/rootfs/usr/local/sbin" "$dir/rootfs/usr/local/etc/haproxy" "$dir/home"
    cp "$HAPROXY_BIN" "$dir/rootfs/usr/local/sbin/haproxy"
    # Every library at the path ldd resolved it to (the dynamic loader included); -L copies the
    # file behind each symlink under the symlink's name.
    for lib in $(ldd "$HAPROXY_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        cp -L --parents "$lib" "$dir/rootfs/"
    done
    haproxy_etc "$dir/rootfs"
    build_image "swarm-lb/haproxy:$version-local" "$dir"
}

# A private apt configuration in $1 (used through APT_CONFIG, read before /etc/apt's fragments
# so that those are never read): its own sources, lists, cache and an empty dpkg status; no host
# fragments (appstream's metadata downloads), preferences or translations.
apt_config() {
    local d=$1
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/apt.conf.d" "$d/preferences.d"
    : >"$d/status"
    cat >"$d/apt.conf" <<EOF
Dir::Etc::main "$d/apt.conf.d/none";
Dir::Etc::parts "$d/apt.conf.d";
Dir::Etc::sourcelist "$d/sources.list";
Dir::Etc::sourceparts "$d/sources.list.d";
Dir::Etc::preferences "$d/preferences";
Dir::Etc::preferencesparts "$d/preferences.d";
Dir::State "$d";
Dir::State::lists "$d/lists";
Dir::State::status "$d/status";
Dir::Cache "$d/cache";
Acquire::Languages "none";
Debug::NoLocking "true";
// The mirror may be a frozen snapshot: sid's and experimental's Release files expire after a
// week. Signatures are still checked, and the pins say which haproxy is wanted.
Acquire::Check-Valid-Until "false";
EOF
}

# The library packages `pkg[=version]` needs, recursively (Depends and Pre-Depends, first
# alternative): the files a FROM-scratch image of it must hold. Anything not named lib* or
# zlib* (adduser, lsb-base, systemd, *-base) is packaging, not a runtime dependency.
library_closure() {
    local -A seen=()
    local queue=("$1") pkg dep
    while ((${#queue[@]})); do
        pkg=${queue[0]}
        queue=("${queue[@]:1}")
        for dep in $(apt-cache show --no-all-versions "$pkg" |
            sed -n 's/^\(Pre-\)\?Depends: //p' | tr ',' '\n' |
            sed 's/|.*//; s/(.*)//; s/:any//; s/[[:space:]]//g'); do
            [[ $dep == lib* || $dep == zlib* ]] || continue
            [[ -n ${seen[$dep]:-} ]] && continue
            seen[$dep]=1
            queue+=("$dep")
        done
    done
    ((${#seen[@]})) && printf '%s\n' "${!seen[@]}" | LC_ALL=C sort
}

# Unpack Debian's haproxy=<pin> from <suites> and its libraries into $HAPROXY_CACHE/<line>/rootfs,
# laid out like the official image; reused as long as line, suites, pin and recipe are the same.
debian_rootfs() {
    local line=$1 suites=$2 pin=$3
    local dir=$HAPROXY_CACHE/$1 key
    key="suites=$suites pin=$pin recipe=$ROOTFS_RECIPE mirror=$DEBIAN_MIRROR"
    if [[ $FORCE != 1 && -f $dir/stamp && $(cat "$dir/stamp") == "$key" && -x $dir/rootfs/usr/local/sbin/haproxy ]]; then
        log "haproxy $line: rootfs of $pin cached in $dir"
        return
    fi
    local start=$SECONDS apt=$dir/apt suite available pkg
    rm -rf "$dir/rootfs" "$dir/debs" "$dir/stamp"
    mkdir -p "$dir/debs" "$dir/rootfs"
    apt_config "$apt"
    : >"$apt/sources.list"
    for suite in ${suites//,/ }; do
        printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
            "$DEBIAN_MIRROR" "$suite" >>"$apt/sources.list"
    done
    local -x APT_CONFIG=$apt/apt.conf
    log "haproxy $line: apt-get update ($suites)"
    apt-get -q --error-on=any update >"$dir/apt-update.log" 2>&1 ||
        die "apt-get update of $suites failed (is $DEBIAN_MIRROR reachable?); see $dir/apt-update.log"
    if ! apt-cache show "haproxy=$pin" >/dev/null 2>&1; then
        available=$(apt-cache madison haproxy | awk -F'|' '{gsub(/ /, "", $2); printf "%s ", $2}')
        die "haproxy=$pin is not in Debian $suites (it has: ${available:-nothing}); update HAPROXY_PINS in $0"
    fi
    local -a packages=("haproxy=$pin")
    for pkg in $(library_closure "haproxy=$pin"); do
        packages+=("$pkg=$(apt-cache show --no-all-versions "$pkg" | sed -n 's/^Version: //p')")
    done
    printf '%s\n' "${packages[@]}" >"$dir/packages"
    log "haproxy $line: downloading ${packages[*]}"
    (cd "$dir/debs" && apt-get -q download "${packages[@]}") >"$dir/apt-download.log" 2>&1 ||
        die "apt-get download failed; see $dir/apt-download.log"
    local deb root=$dir/rootfs
    for deb in "$dir"/debs/*.deb; do
        dpkg -x "$deb" "$root"
    done
    # Merged /usr (trixie on): packages ship under usr/, the base system provides these links.
    [[ -e $root/lib ]] || ln -s usr/lib "$root/lib"
    [[ -e $root/lib64 ]] || ln -s usr/lib64 "$root/lib64"
    # The official image's layout: the binary in /usr/local/sbin, the config dir beside it.
    mkdir -p "$root/usr/local/sbin" "$root/usr/local/etc/haproxy" "$root/var/lib/haproxy" \
        "$root/tmp" "$root/proc" "$root/dev"
    chmod 1777 "$root/tmp"
    mv "$root/usr/sbin/haproxy" "$root/usr/local/sbin/haproxy"
    # What only the packaging uses: init scripts, systemd units, docs, Debian's sample config.
    rm -rf "$root/etc/init.d" "$root/etc/default" "$root/etc/logrotate.d" "$root/etc/rsyslog.d" \
        "$root/etc/haproxy" "$root/usr/lib/systemd" "$root/usr/share/doc" "$root/usr/share/man" \
        "$root/usr/share/lintian" "$root/usr/share/vim" "$root/usr/lib/sysusers.d" \
        "$root/usr/lib/tmpfiles.d"
    haproxy_etc "$root"
    # Every library the binary needs resolves inside the rootfs (the loader is the rootfs' own).
    local version
    version=$(chroot "$root" /usr/local/sbin/haproxy -v 2>&1 | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p') ||
        true
    [[ $version == "$pin" ]] ||
        die "haproxy $line: the unpacked binary does not run in its rootfs: $(chroot "$root" /usr/local/sbin/haproxy -v 2>&1 | head -3)"
    printf '%s\n' "$key" >"$dir/stamp"
    log "haproxy $line: rootfs of $pin ready in $((SECONDS - start))s ($(du -sh "$root" | cut -f1))"
}

# $HAPROXY_CACHE/<line>/haproxy: runs the rootfs' haproxy with this host's network, pids, /proc,
# /dev and temp dir, so that a test can spawn it like a host binary ($HAPROXY): the paths it
# passes exist at the same place inside, its process group and pid are haproxy's own (each step
# execs), and a reload's re-exec of /proc/self/exe finds the rootfs' loader and libraries (a
# host-side run through that loader fails at the first reload). The bind mounts live in a
# private mount namespace that goes away with the last haproxy process. Needs root.
haproxy_wrapper() {
    local line=$1 pin=$2 dir=$HAPROXY_CACHE/$1
    cat >"$dir/haproxy.new" <<EOF
#!/bin/sh
# HAProxy $pin (Debian's package, swarm-lb/haproxy:$line-local) chrooted into $dir/rootfs.
# Written by scripts/images.sh; see haproxy_wrapper there.
root='$dir/rootfs'
[ "\$(id -u)" = 0 ] || { echo "haproxy $pin wrapper: needs root (unshare, mount, chroot)" >&2; exit 126; }
exec unshare --mount --propagation private -- /bin/sh -c '
    set -e
    root=\$1 tmp=\$2
    shift 2
    mount --rbind /proc "\$root/proc"
    mount --rbind /dev "\$root/dev"
    mount --bind /tmp "\$root/tmp"
    case \$tmp in
    /tmp | /tmp/*) ;;
    *) mkdir -p "\$root\$tmp" && mount --bind "\$tmp" "\$root\$tmp" ;;
    esac
    exec chroot "\$root" /usr/local/sbin/haproxy "\$@"
' haproxy-$line "\$root" "\${TMPDIR:-/tmp}" "\$@"
EOF
    chmod 755 "$dir/haproxy.new"
    mv "$dir/haproxy.new" "$dir/haproxy"
}

build_haproxy_debian() {
    local want=$1 entry line suites pin dir
    for entry in "${HAPROXY_PINS[@]}"; do
        read -r line suites pin <<<"$entry"
        [[ $line == "$want" ]] || continue
        debian_rootfs "$line" "$suites" "$pin"
        haproxy_wrapper "$line" "$pin"
        dir=$(stage "haproxy-$line" haproxy)
        cp -a "$HAPROXY_CACHE/$line/rootfs" "$dir/rootfs"
        mkdir -p "$dir/home"
        build_image "swarm-lb/haproxy:$line-local" "$dir"
        return
    done
    die "no pinned Debian package for haproxy $want (pinned: ${HAPROXY_PINS[*]})"
}

# build_haproxy [LINE]: one line (2.6 is the host's package), or all of them.
build_haproxy() {
    local line=${1:-all} entry
    case $line in
    2.6) build_haproxy_host ;;
    all)
        build_haproxy_host
        for entry in "${HAPROXY_PINS[@]}"; do
            build_haproxy_debian "${entry%% *}"
        done
        ;;
    *) build_haproxy_debian "$line" ;;
    esac
}

build_swarm_lb() {
    static_binaries
    local dir bundle=/etc/ssl/certs/ca-certificates.crt
    [[ -s $bundle ]] || die "$bundle missing: apt-get install ca-certificates"
    dir=$(stage swarm-lb)
    cp "$STATIC_TARGET_DIR/$TRIPLE/release/swarm-lb" "$dir/"
    cp "$bundle" "$dir/ca-certificates.crt"
    build_image "${SWARM_LB_IMAGE:-swarm-lb/swarm-lb:local}" "$dir"
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
        haproxy-*) build_haproxy "${target#haproxy-}" ;;
        swarm-lb) build_swarm_lb ;;
        testapp) build_testapp ;;
        busybox) build_busybox ;;
        *) die "unknown image $target (haproxy, haproxy-<line>, swarm-lb, testapp, busybox)" ;;
        esac
    done
    log "done in $((SECONDS - start))s"
}

main "$@"
