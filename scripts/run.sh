#!/usr/bin/env bash
# Runs the product on this machine from the repo alone: the engine and a one-node Swarm if there
# is none (scripts/setup.sh), HAProxy + swarm-lb from docker-compose.yml on the local images, and
# a demo service routed by its labels. Ends by printing the curl line that reaches the demo.
#
# Environment: SWARM_LB_HTTP_PORT (default 127.0.0.1:8080), SWARM_LB_HTTPS_PORT (default
# 127.0.0.1:8443), DEMO_HOST (default demo.local),
# DEMO_REPLICAS (default 3), and those of scripts/setup.sh. `scripts/run.sh down` removes it all.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
export SWARM_LB_HTTP_PORT=${SWARM_LB_HTTP_PORT:-127.0.0.1:8080}
# HTTPS on loopback too, like HTTP, metrics and stats (the compose file's own default is 443 on
# every interface).
export SWARM_LB_HTTPS_PORT=${SWARM_LB_HTTPS_PORT:-127.0.0.1:8443}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-swarm-lb}
DEMO_HOST=${DEMO_HOST:-demo.local}
DEMO_REPLICAS=${DEMO_REPLICAS:-3}
NETWORK=swarm-lb-demo

log() { printf 'run: %s\n' "$*" >&2; }

if [[ ${1:-} == down ]]; then
    "$DOCKER" service rm demo >/dev/null 2>&1 || true
    docker-compose -f "$REPO/docker-compose.yml" down -v
    # Another service still on the network keeps it: say so rather than claim it is gone.
    if "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1 &&
        ! out=$("$DOCKER" network rm "$NETWORK" 2>&1); then
        log "demo and stack removed; network $NETWORK kept: $out"
        exit 1
    fi
    log "demo, stack and network removed"
    exit 0
fi

bash "$REPO/scripts/setup.sh" up

if ! "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1; then
    "$DOCKER" network create -d overlay --attachable "$NETWORK" >/dev/null
    log "network $NETWORK created"
fi
# With SWARM_LB_SERVICE_CLUSTER set, the stack serves only services of that cluster: so is the
# demo labelled (an existing demo is relabelled to match).
cluster_label=()
[[ -n ${SWARM_LB_SERVICE_CLUSTER:-} ]] &&
    cluster_label=(--label "com.docker.lb.service_cluster=$SWARM_LB_SERVICE_CLUSTER")
if ! "$DOCKER" service inspect demo >/dev/null 2>&1; then
    "$DOCKER" service create --detach --quiet --no-resolve-image --name demo \
        --network "$NETWORK" --replicas "$DEMO_REPLICAS" \
        --label "com.docker.lb.hosts=$DEMO_HOST" --label com.docker.lb.port=8080 \
        "${cluster_label[@]}" \
        --env 'TASK_NAME={{.Task.Name}}' swarm-lb/testapp:1 >/dev/null
    log "service demo created ($DEMO_REPLICAS replicas, host $DEMO_HOST${SWARM_LB_SERVICE_CLUSTER:+, service cluster $SWARM_LB_SERVICE_CLUSTER})"
elif [[ -n ${SWARM_LB_SERVICE_CLUSTER:-} ]]; then
    "$DOCKER" service update --detach --quiet \
        --label-add "com.docker.lb.service_cluster=$SWARM_LB_SERVICE_CLUSTER" demo >/dev/null
fi

port=${SWARM_LB_HTTP_PORT##*:}
addr=${SWARM_LB_HTTP_PORT%:*}
[[ $addr == "$SWARM_LB_HTTP_PORT" || -z $addr ]] && addr=127.0.0.1
url="http://$addr:$port/"
log "waiting for the demo to answer through HAProxy"
for _ in $(seq 1 120); do
    if curl -fsS -m 2 -H "Host: $DEMO_HOST" "$url" >/dev/null 2>&1; then
        echo
        echo "swarm-lb is routing. Try:"
        echo "  curl -H 'Host: $DEMO_HOST' $url"
        echo "Scale it and watch no reload happen:"
        echo "  docker service scale demo=6"
        echo "Logs: docker logs -f ${COMPOSE_PROJECT_NAME}_swarm-lb_1"
        exit 0
    fi
    sleep 0.5
done
log "the demo did not answer within 60 s; swarm-lb's log:"
"$DOCKER" logs --tail 50 "${COMPOSE_PROJECT_NAME}_swarm-lb_1" >&2 || true
exit 1
