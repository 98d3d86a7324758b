#!/usr/bin/env bash
# Soak swarm-lb: churn (scaling, rolling updates in both orders, services created and removed,
# hosts label edits) under continuous load for DURATION, sampling every 10 s swarm-lb's RSS and
# fds, HAProxy's process count, RSS and fds, and failed requests. Writes PREFIX.csv and
# PREFIX.png (default /tmp/swarm-lb-soak-<pid>) and exits 1 on a failed request or a resource
# line that grew past its bound.
#
#   scripts/soak.sh DURATION [-o PREFIX]       DURATION: 60, 90s, 30m, 1h
#   scripts/soak.sh 30m -o docs/soak           the record in docs/benchmarks.md
#
# Needs what scripts/setup.sh installs and starts (engine, Swarm, local images) and
# python3-matplotlib. Environment: SWARM_LB_IMAGE (default swarm-lb/swarm-lb:local),
# SOAK_HAPROXY_IMAGE (default swarm-lb/haproxy:2.6-local), DOCKER.
set -euo pipefail
cd "$(dirname "$0")/.."
(($# >= 1)) || { echo "usage: $0 DURATION [-o PREFIX]" >&2; exit 2; }
command -v docker-compose >/dev/null || { echo "soak: docker-compose missing: bash scripts/setup.sh installs it" >&2; exit 1; }
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null ||
    { echo "soak: matplotlib missing: apt-get install python3-matplotlib (scripts/setup.sh does)" >&2; exit 1; }
exec /usr/bin/python3 scripts/soak.py "$@"
