#!/usr/bin/env bash
# A real 3-node Docker Swarm on this machine for swarm-lb's multi-node tests (issue 13):
# scripts/multinode/cluster.sh (three dockerds in network namespaces, 1 manager + 2 workers;
# see scripts/multinode/README.md) with the images the tests run loaded into every node.
#
#   scripts/multinode.sh up      start (or keep) the cluster; label mn1-mn3 as edges
#   scripts/multinode.sh down    stop it and remove everything it made
#   scripts/multinode.sh status
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
export MN_IMAGES="$SWARM_LB_IMAGE $HAPROXY_IMAGE swarm-lb/testapp:1 swarm-lb/busybox:local"
DOCKER=${DOCKER:-/usr/bin/docker}

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

case ${1:-} in
up)
    [[ $(id -u) == 0 ]] || die "run as root (network namespaces, dockerd)"
    for b in dockerd containerd runc ip nsenter unshare; do
        command -v $b >/dev/null || die "$b not found: apt-get install docker.io iproute2 util-linux (scripts/setup.sh)"
    done
    fresh_images
    bash "$CLUSTER" up
    for n in mn1 mn2 mn3; do
        "$DOCKER" -H "unix://$MN_BASE/mn1/docker.sock" node update --label-add swarm-lb.edge=true "$n" >/dev/null
    done
    log "edges: mn1 mn2 mn3 (node label swarm-lb.edge=true)"
    ;;
down) bash "$CLUSTER" down ;;
status) bash "$CLUSTER" status ;;
*) die "usage: $0 up|down|status" ;;
esac
