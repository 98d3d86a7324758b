#!/bin/sh
# Builds the tiny local images the tests run (there is no registry to pull from).
# Idempotent: an image that already exists is left alone.
#
#   swarm-lb-test/busybox:1   FROM scratch + a static busybox; default command serves HTTP on :8080.
#
# Needs: a running Docker engine and /bin/busybox from `apt-get install -y busybox-static`.
set -eu

DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=swarm-lb-test/busybox:1

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

BUSYBOX=${BUSYBOX:-/bin/busybox}
if [ ! -x "$BUSYBOX" ]; then
    echo "static busybox not found at $BUSYBOX: apt-get install -y busybox-static" >&2
    exit 1
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$BUSYBOX" "$dir/busybox"
mkdir -p "$dir/www"
echo ok > "$dir/www/index.html"
cat > "$dir/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
COPY www /www
ENTRYPOINT ["/bin/busybox"]
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
"$DOCKER" build -q -t "$IMAGE" "$dir" >/dev/null
echo "built $IMAGE" >&2
