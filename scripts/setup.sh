#!/usr/bin/env bash
# Prepares a Debian 12 machine for swarm-lb's end-to-end tests, from nothing or from any earlier
# state (packages present or not, dockerd running or not, /var/lib/docker and its swarm state
# left over). Safe to run again and again.
#
#   scripts/setup.sh        packages, a running dockerd, a one-node Swarm, the local images
#   scripts/setup.sh up     ... and `docker-compose up -d` of docker-compose.yml on those images
#   scripts/setup.sh packages  the packages only (no dockerd, Swarm or images: safe beside a
#                           running test session)
#
# Environment: DOCKER (default /usr/bin/docker, the client matching Debian's engine),
# DOCKER_WAIT (seconds to wait for dockerd, default 60), and those of scripts/images.sh.
# For `up`: SWARM_LB_IMAGE, HAPROXY_IMAGE (default the local images), SWARM_LB_HTTP_PORT,
# COMPOSE_PROJECT_NAME.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
DOCKER_WAIT=${DOCKER_WAIT:-60}
# prometheus: promtool, which the tests use to check swarm-lb's /metrics.
# python3-matplotlib: the plots of scripts/soak.sh and scripts/plot-convergence.py.
# openssl, curl: the TLS tests' clients (s_client -servername, curl --resolve --http2).
# docker-registry: the distribution registry the 3-node cluster pulls the stack's images from
# (scripts/multinode.sh up --registry runs it on the cluster's network; its own service is
# disabled below).
# sslscan: the TLS profile tests' scanner (protocols and suites the HTTPS bind accepts).
# apache2-utils: htpasswd, which makes the basic-auth tests' files (bcrypt, sha-512-crypt).
# testssl.sh: the HSTS check on the HTTPS edge (tests/shaping.rs, run once by scripts/test.sh).
# ca-certificates: the CA bundle scripts/images.sh puts in swarm-lb's image.
# iproute2: ip, with which the one-node ACME tests read the bridge's address when Docker does
# not list its gateway.
PACKAGES=(docker.io docker-compose haproxy wrk busybox-static prometheus python3-matplotlib openssl curl
    docker-registry sslscan apache2-utils testssl.sh ca-certificates iproute2
    # Let's Encrypt's test CA (pebble, pebble-challtestsrv: Debian 12 ships 2.4): tests/acme.rs
    # starts its own on free loopback ports.
    pebble
    # chromium: the headless browser integration/e2e/tests/status_page.rs loads the status page
    # with (DOM dump and screenshot).
    chromium)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' ||
            missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "packages present"
        return
    fi
    log "installing ${missing[*]}"
    repair_statoverride
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The registry package starts its service on the host's port 5000 where systemd runs; the
    # tests start their own on the cluster's network only.
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
}

# A dpkg stat override naming a group that no longer exists (machine images that drop
# ssl-cert or messagebus) makes every dpkg run abort; recreate such groups as system groups.
repair_statoverride() {
    local user group rest
    [[ -r /var/lib/dpkg/statoverride ]] || return 0
    while read -r user group rest; do
        [[ -n $group ]] || continue
        if ! getent group "$group" >/dev/null; then
            log "recreating system group $group named by a dpkg stat override"
            groupadd --system "$group"
        fi
    done </var/lib/dpkg/statoverride
}

docker_answers() { "$DOCKER" info >/dev/null 2>&1; }

start_dockerd() {
    [[ -x $DOCKER ]] || die "$DOCKER not found (apt-get install docker.io)"
    if docker_answers; then
        log "dockerd answers"
        return
    fi
    if ! pgrep -x dockerd >/dev/null; then
        # A pid file left by a dockerd that died makes the next one refuse to start.
        local pid
        pid=$(cat /var/run/docker.pid 2>/dev/null || true)
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            rm -f /var/run/docker.pid
        fi
        log "starting dockerd (log: /var/log/dockerd.log)"
        # Descriptors 3-9 closed: a lock this script runs under (`flock -s LOCK setup.sh` opens
        # LOCK as fd 3) must not be inherited by the daemon, which would hold it forever.
        nohup /usr/sbin/dockerd >>/var/log/dockerd.log 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
        disown
    else
        log "dockerd is running but does not answer yet; waiting"
    fi
    local deadline=$((SECONDS + DOCKER_WAIT))
    until docker_answers; do
        ((SECONDS < deadline)) || die "dockerd did not answer within ${DOCKER_WAIT}s; see /var/log/dockerd.log"
        sleep 0.2
    done
    log "dockerd answers"
}

swarm_state() { "$DOCKER" info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }

init_swarm() {
    local deadline=$((SECONDS + DOCKER_WAIT)) state
    # A node restarted with old swarm state reports `pending` for a moment before `active`.
    while state=$(swarm_state); [[ $state == pending ]]; do
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    case $state in
    active)
        log "swarm active"
        return
        ;;
    inactive) ;;
    *)
        # error, locked, or stuck pending: leftover state that cannot come back; start over.
        log "swarm state is '$state': leaving and re-initialising"
        "$DOCKER" swarm leave --force >/dev/null 2>&1 || true
        ;;
    esac
    "$DOCKER" swarm init --advertise-addr 127.0.0.1 >/dev/null
    log "swarm initialised"
}

compose_up() {
    command -v docker-compose >/dev/null || die "docker-compose not found (apt-get install docker-compose)"
    # The LTS the compose file defaults to (haproxy:3.4), built locally by scripts/images.sh.
    local haproxy_tag=3.4
    export SWARM_LB_IMAGE=${SWARM_LB_IMAGE:-swarm-lb/swarm-lb:local}
    export HAPROXY_IMAGE=${HAPROXY_IMAGE:-swarm-lb/haproxy:$haproxy_tag-local}
    log "docker-compose up -d (swarm-lb: $SWARM_LB_IMAGE, haproxy: $HAPROXY_IMAGE)"
    docker-compose -f "$REPO/docker-compose.yml" up -d
}

main() {
    local start=$SECONDS
    case ${1:-} in
    "" | up | packages) ;;
    *) die "usage: $0 [up|packages]" ;;
    esac
    [[ $(id -u) == 0 ]] || die "run as root (installs packages, starts dockerd)"
    install_packages
    if [[ ${1:-} == packages ]]; then
        log "packages ready in $((SECONDS - start))s"
        return
    fi
    start_dockerd
    init_swarm
    DOCKER=$DOCKER "$REPO/scripts/images.sh"
    if [[ ${1:-} == up ]]; then
        compose_up
    fi
    log "ready in $((SECONDS - start))s"
}

main "$@"
