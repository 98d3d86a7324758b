#!/usr/bin/env bash
# A real 3-node Docker Swarm on this machine for swarm-lb's multi-node tests (issue 13):
# scripts/multinode/cluster.sh (three dockerds in network namespaces, 1 manager + 2 workers;
# see scripts/multinode/README.md) with the images the tests run loaded into every node.
#
#   scripts/multinode.sh up               start (or keep) the cluster; label mn1-mn3 as edges
#   scripts/multinode.sh up --registry    ... the way users run it (issue 21): a registry on the
#                                         cluster's network, the images pushed to it, nodes that
#                                         pull by name (see below)
#   scripts/multinode.sh down             stop it (and the registry) and remove everything it made
#   scripts/multinode.sh status
#   scripts/multinode.sh registry         print the registry's address (host:port)
#   scripts/multinode.sh esp              exit 0 if this kernel can carry Swarm's encrypted
#                                         overlays (IPsec ESP with rfc4106(gcm(aes))), else 1
#
# With --registry: Debian's docker-registry (the distribution registry, installed here when
# missing) serves on $REGISTRY (10.213.0.1:5000, the switch namespace's address on the nodes'
# link: nothing outside the cluster reaches it), storage under $MN_BASE/registry. The images are
# loaded into mn1 only and pushed from there as $REGISTRY/<name>:<tag>; mn2 and mn3 hold no
# image and pull each by name, tasks included (no DOCKER_SERVICE_PREFER_OFFLINE_IMAGE), over
# plain HTTP (the nodes list the registry in insecure-registries). A cluster up in the other
# mode is restarted.
#
# Environment: SWARM_LB_IMAGE (default swarm-lb/swarm-lb:local), SWARM_LB_E2E_HAPROXY_IMAGE
# (default swarm-lb/haproxy:2.6-local), MN_BASE (default /tmp/multinode). Build the images
# first with scripts/images.sh. Needs root, dockerd, containerd, runc, iproute2.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER=$REPO/scripts/multinode/cluster.sh
export MN_BASE=${MN_BASE:-/tmp/multinode}
SWARM_LB_IMAGE=${SWARM_LB_IMAGE:-swarm-lb/swarm-lb:local}
HAPROXY_IMAGE=${SWARM_LB_E2E_HAPROXY_IMAGE:-swarm-lb/haproxy:2.6-local}
DOCKER=${DOCKER:-/usr/bin/docker}
REGISTRY=10.213.0.1:5000
REGISTRY_DIR=$MN_BASE/registry
# What the stack deploys with --registry besides swarm-lb (HAProxy 2.6 and 3.4: the CI matrix's
# two lines).
STACK_IMAGES="swarm-lb/haproxy:2.6-local swarm-lb/haproxy:3.4-local"

log() { printf 'multinode: %s\n' "$*" >&2; }
die() { printf 'multinode: error: %s\n' "$*" >&2; exit 1; }

# cluster.sh reuses its image tarball while it exists: drop it when an image changed.
fresh_images() {
    local ids
    ids=$("$DOCKER" image inspect --format '{{.Id}}' $MN_IMAGES) ||
        die "missing images ($MN_IMAGES): build them with scripts/images.sh"
    mkdir -p "$MN_BASE"
    if [[ ! -f $MN_BASE/images.ids || $(cat "$MN_BASE/images.ids") != "$ids" ]]; then
        rm -f "$MN_BASE/images.tar"
        # The nodes hold the old images too: a running cluster must be restarted to load them.
        if [[ -S $MN_BASE/mn1/docker.sock ]]; then
            log "images changed: restarting the cluster"
            bash "$CLUSTER" down
        fi
        printf '%s\n' "$ids" >"$MN_BASE/images.ids"
    fi
}

# A cluster started in the other mode (pull from the registry, or local images only) goes.
same_mode() {
    local want=$1 have=0
    [[ -f $MN_BASE/node.env ]] || return 0
    grep -q '^MN_PULL=1$' "$MN_BASE/node.env" && have=1
    if [[ $have != "$want" && -S $MN_BASE/mn1/docker.sock ]]; then
        log "cluster up in the other image mode: restarting it"
        stop_registry
        bash "$CLUSTER" down
    fi
}

# Debian's distribution registry, installed like every package the tests need (setup.sh lists
# it too); the package's own service (port 5000 on the host) is never left running.
install_registry() {
    command -v docker-registry >/dev/null && return
    log "installing Debian's docker-registry"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; } ||
        die "apt-get install docker-registry failed"
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
}

registry_pid() {
    local p
    p=$(cat "$REGISTRY_DIR/pid" 2>/dev/null) || return 1
    kill -0 "$p" 2>/dev/null || return 1
    tr '\0' ' ' </proc/"$p"/cmdline | grep -q -- "$REGISTRY_DIR/config.yml" || return 1
    echo "$p"
}

registry_answers() { ip netns exec mn-sw curl -sf -o /dev/null "http://$REGISTRY/v2/"; }

start_registry() {
    install_registry
    registry_pid >/dev/null && return
    mkdir -p "$REGISTRY_DIR/data"
    cat >"$REGISTRY_DIR/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY
YML
    ip netns exec mn-sw setsid -f sh -c 'echo $$ >"$1/pid"; exec docker-registry serve "$1/config.yml" >>"$1/registry.log" 2>&1 </dev/null' \
        registry "$REGISTRY_DIR"
    local deadline=$((SECONDS + 30))
    until registry_answers; do
        ((SECONDS < deadline)) || die "the registry did not answer on $REGISTRY within 30 s (see $REGISTRY_DIR/registry.log)"
        sleep 0.1
    done
    log "registry answering on $REGISTRY (pid $(registry_pid))"
}

stop_registry() {
    local p i
    p=$(registry_pid) || return 0
    kill -TERM "$p"
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
    log "registry stopped"
}

# Tags every image of MN_IMAGES as $REGISTRY/<name> on mn1 and pushes it.
push_images() {
    local img start=$SECONDS
    for img in $MN_IMAGES; do
        "$DOCKER" -H "unix://$MN_BASE/mn1/docker.sock" tag "$img" "$REGISTRY/$img"
        "$DOCKER" -H "unix://$MN_BASE/mn1/docker.sock" push -q "$REGISTRY/$img" >/dev/null ||
            die "docker push $REGISTRY/$img from mn1 failed"
    done
    log "pushed to $REGISTRY in $((SECONDS - start))s: $MN_IMAGES"
}

case ${1:-} in
up)
    [[ $(id -u) == 0 ]] || die "run as root (network namespaces, dockerd)"
    for b in dockerd containerd runc ip nsenter unshare curl; do
        command -v $b >/dev/null || die "$b not found: apt-get install docker.io iproute2 util-linux curl (scripts/setup.sh)"
    done
    if [[ ${2:-} == --registry ]]; then
        export MN_IMAGES="$SWARM_LB_IMAGE $HAPROXY_IMAGE $STACK_IMAGES swarm-lb/testapp:1 swarm-lb/busybox:local"
        export MN_IMAGES=$(printf '%s\n' $MN_IMAGES | awk '!seen[$0]++' | tr '\n' ' ')
        export MN_REGISTRY=$REGISTRY MN_PULL=1 MN_LOAD_ON=mn1
        same_mode 1
    else
        export MN_IMAGES="$SWARM_LB_IMAGE $HAPROXY_IMAGE swarm-lb/testapp:1 swarm-lb/busybox:local"
        export MN_REGISTRY= MN_PULL=0
        same_mode 0
    fi
    fresh_images
    bash "$CLUSTER" up
    if [[ $MN_PULL == 1 ]]; then
        start_registry
        push_images
    fi
    for n in mn1 mn2 mn3; do
        "$DOCKER" -H "unix://$MN_BASE/mn1/docker.sock" node update --label-add swarm-lb.edge=true "$n" >/dev/null
    done
    log "edges: mn1 mn2 mn3 (node label swarm-lb.edge=true)"
    ;;
down)
    stop_registry
    rm -rf "$REGISTRY_DIR"
    bash "$CLUSTER" down
    ;;
status) bash "$CLUSTER" status ;;
registry) echo "$REGISTRY" ;;
esp)
    # Swarm's `encrypted` overlays are IPsec ESP in transport mode with AES-GCM (the engine logs
    # "Failed Adding ... function not implemented" and drops the traffic between nodes when the
    # kernel lacks them). Tried in a throwaway namespace: nothing else is touched.
    ns=mn-espcheck-$$
    ip netns add "$ns"
    rc=0
    ip -n "$ns" xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 mode transport \
        aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 64 2>/dev/null || rc=1
    ip netns del "$ns"
    exit $rc
    ;;
*) die "usage: $0 up [--registry]|down|status|registry|esp" ;;
esac
