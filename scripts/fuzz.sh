#!/usr/bin/env bash
# Fuzzes everything swarm-lb parses from outside, each target for a bounded time:
#   labels       labels of two services -> model::desired (no panic; only checked names come out)
#   replies      every HAProxy reply parser and the reply framing
#   docker_json  Docker's services/tasks/networks JSON -> snapshot -> desired
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; CI runs a short pass)
#   scripts/fuzz.sh build                  (only builds the targets: CI does it beside the
#                                           multi-node stages, which mostly wait on Docker)
#
# Uses cargo-fuzz (libFuzzer) on the nightly toolchain, installing cargo-fuzz from crates.io if
# it is missing. Each target starts from a corpus seeded with the captured fixtures
# (tests/fixtures), kept in target/fuzz-corpus/<target> across runs. A crash stops the script
# with libFuzzer's report and the input under fuzz/artifacts/<target>/: make it a regression
# test (tests/fuzz_regressions.rs) before fixing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SECONDS_PER_TARGET=${1:-60}
BUILD_ONLY=0
[[ $SECONDS_PER_TARGET == build ]] && BUILD_ONLY=1 SECONDS_PER_TARGET=1
[[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: seconds must be a positive whole number" >&2; exit 2; }
TARGETS=(labels replies docker_json)
CORPUS=$PWD/target/fuzz-corpus

log() { printf 'fuzz: %s\n' "$*" >&2; }

rustup toolchain list | grep -q '^nightly' ||
    { echo "fuzz: no nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Seeds: each fixture as it is, and the Docker ones joined as one docker_json input.
seed() {
    local target=$1 dir=$CORPUS/$1
    mkdir -p "$dir"
    case $target in
    labels)
        printf 'hosts=a.example, b.example ,\nport=8080\ncontext_root=/api\nredirects=http://a.example,http://b.example\n--\nhosts=a.example\nport=80\nweight=3\n' >"$dir/seed-canary"
        printf 'hosts=a.example\nport=80\nbackend_mode=vip\nsticky_session_cookie=sid\nmax_fails=2\nfail_timeout=5s\n' >"$dir/seed-options"
        ;;
    replies)
        cp "$REPO"/tests/fixtures/haproxy-2.6/*.txt "$REPO"/tests/fixtures/haproxy-2.6/*.raw "$dir/"
        ;;
    docker_json)
        local f=$REPO/tests/fixtures/docker-1.41
        { cat "$f/services.json"; printf '\0'; cat "$f/tasks.json"; printf '\0'; cat "$f/networks.json"; } >"$dir/seed-listing"
        { printf '[]\0'; cat "$f/tasks-scaling-down.json"; printf '\0[]'; } >"$dir/seed-scaling"
        ;;
    esac
}

cd fuzz
if ((BUILD_ONLY)); then
    # The same profile and sanitizer as `cargo fuzz run` (cargo-fuzz's defaults), so the runs
    # after it build nothing.
    cargo +nightly fuzz build
    log "targets built"
    exit 0
fi
for target in "${TARGETS[@]}"; do
    seed "$target"
    log "$target: ${SECONDS_PER_TARGET}s"
    # -timeout: an input that takes over 10 s is a hang, reported as a crash.
    out=$REPO/target/fuzz-$target.log
    status=0
    cargo +nightly fuzz run "$target" "$CORPUS/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$out" 2>&1 || status=$?
    # libFuzzer's progress lines stay in the log; its summary and any crash report are shown.
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs|==[0-9]+==|SUMMARY|Test unit written|thread .* panicked|error(\[|:))' "$out" || true
    if ((status != 0)); then
        tail -n 40 "$out" >&2
        log "$target: FAILED (log: $out; input: fuzz/artifacts/$target)"
        exit 1
    fi
    log "$target: no crash, no hang"
done
log "all targets passed"
