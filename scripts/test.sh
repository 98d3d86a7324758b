#!/usr/bin/env bash
# Runs every test on a fresh Debian 12 machine: installs and starts what the tests need
# (HAProxy and the Docker engine from Debian's packages, a one-node Swarm, the local images),
# then the checks and the whole test suite.
#
# The real-HAProxy suites run once per supported HAProxy line: 2.6 is the host's package, 3.0,
# 3.2 and 3.4 are Debian's packages unpacked by scripts/images.sh, run through the chroot
# wrapper it writes beside each rootfs. Every version runs even when an earlier one fails; the
# summary at the end names the versions that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The HAProxy lines of the matrix besides the host's 2.6 (scripts/images.sh pins them).
MATRIX=(3.0 3.2 3.4)
# The real-HAProxy suites (no Docker): what changes with the HAProxy version.
HAPROXY_SUITES=(--test reconcile --test reload --test runtime_client --test observe --test render_check --test tls --test access --test forward_auth --test tls_profile --test shaping --test acme)

# What git sees before the run: the run must leave the checkout as it found it (see the end).
tree_before=$(git status --porcelain --untracked-files=all)
[[ -z $tree_before ]] || echo "test: the tree has changes before the run; the end checks only that the run adds none" >&2

bash scripts/setup.sh
# The suite runs beside the product stack of scripts/run.sh (README's first command), which
# every stack the tests start must leave alone (their own compose project, container names and
# loopback ports); it goes when the run ends (~30 s in all). SWARM_LB_TEST_WITH_PRODUCT_STACK=0
# leaves it out.
if [[ ${SWARM_LB_TEST_WITH_PRODUCT_STACK:-1} == 1 ]]; then
    bash scripts/run.sh
    trap 'bash scripts/run.sh down || echo "test: removing the product stack failed" >&2' EXIT
fi

export CARGO_TERM_COLOR=never
failed=()
DOCKERD_LOG=/var/log/dockerd.log
log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# dockerd_panicked SINCE: true when the host dockerd's log has a Go panic after byte SINCE
# and the daemon no longer answers. Debian 12's docker.io 20.10.24 carries a rare swarmkit
# race (SetServiceTasksRemove reads a task the task reaper has just deleted: a nil pointer,
# moby/swarmkit#3216, fixed upstream by #3222, not in Debian's package); it was seen once in
# a CI run, during a suite that creates and removes services by the hundred.
dockerd_panicked() {
    # grep reads to the end (no -q): an early exit would SIGPIPE tail and fail the pipeline.
    tail -c +"$(($1 + 1))" "$DOCKERD_LOG" 2>/dev/null | grep '^panic: ' >/dev/null &&
        ! docker info >/dev/null 2>&1
}
# Panics in the multi-node cluster's daemons are printed (that stage is not re-run).
print_cluster_panics() {
    local f
    for f in "${MN_BASE:-/tmp/multinode}"/*/dockerd.log; do
        [[ -r $f ]] && grep -q '^panic: ' "$f" || continue
        echo "== $f has a panic:"
        grep -A 8 '^panic: ' "$f" | head -20 || true
    done
}
# run LABEL COMMAND...: run it, remember LABEL if it fails. A stage during which the host
# dockerd died of a panic is re-run once, after scripts/setup.sh has started the daemon again
# (the Swarm's state is on disk and survives); the log says so, with the panic's first lines.
# A failure of the re-run, or any failure without a dockerd panic, fails the stage.
run() {
    local label=$1 start=$SECONDS since
    shift
    if ! docker info >/dev/null 2>&1; then
        echo "== dockerd does not answer before '$label': starting it (scripts/setup.sh)"
        bash scripts/setup.sh >/dev/null || echo "== scripts/setup.sh failed" >&2
    fi
    since=$(log_size "$DOCKERD_LOG")
    if "$@"; then
        echo "== ok: $label ($((SECONDS - start))s)"
        return
    fi
    if dockerd_panicked "$since"; then
        echo "== dockerd died of a panic during '$label' (not a swarm-lb failure):"
        tail -c +"$((since + 1))" "$DOCKERD_LOG" | grep -A 12 '^panic: ' | head -16 || true
        echo "== restarting dockerd (scripts/setup.sh) and running '$label' once more"
        bash scripts/setup.sh >/dev/null || echo "== scripts/setup.sh failed" >&2
        if "$@"; then
            echo "== ok: $label, re-run after a dockerd panic ($((SECONDS - start))s)"
            return
        fi
    fi
    print_cluster_panics
    echo "== FAILED: $label ($((SECONDS - start))s)"
    failed+=("$label")
}

haproxy_version() { "$1" -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p'; }

# e2e_lanes "ARGS A" "ARGS B": the e2e suites ARGS A and ARGS B (cargo test target flags) as two
# cargo processes at once, each running two tests at a time: cargo runs one test binary after
# another, so a suite that mostly waits (ACME's CA and lease) would otherwise hold the stage
# alone. Built once first; lane B's output is printed after lane A's. Fails if either fails.
e2e_lanes() {
    local lane_b_log=${TMPDIR:-/tmp}/swarm-lb-e2e-lane-b.log rc=0 a b
    # shellcheck disable=SC2086 # the target flags are words
    cargo test --no-run -p swarm-lb-e2e $1 $2 || return 1
    # shellcheck disable=SC2086
    cargo test --no-fail-fast -p swarm-lb-e2e $1 -- --test-threads 2 &
    a=$!
    # shellcheck disable=SC2086
    cargo test --no-fail-fast -p swarm-lb-e2e $2 -- --test-threads 2 >"$lane_b_log" 2>&1 &
    b=$!
    wait "$a" || rc=1
    wait "$b" || rc=1
    echo "== lane B ($2):"
    cat "$lane_b_log"
    return "$rc"
}

# Stages beside the multi-node ones (which mostly wait on Docker), one after another in a
# background job: each writes LOG and RC (exit status and seconds) under $side_dir, and
# side_report prints them where the job ends, as `run` prints a stage.
side_dir=${TMPDIR:-/tmp}/swarm-lb-side
side_stage() {
    local name=$1 start=$SECONDS rc=0
    shift
    "$@" >"$side_dir/$name.log" 2>&1 || rc=$?
    echo "$rc $((SECONDS - start))" >"$side_dir/$name.rc"
}
# side_report NAME LABEL: the result of side_stage NAME, as `run` prints it (the log's last 200
# lines when it failed).
side_report() {
    local name=$1 label=$2 rc secs
    if ! read -r rc secs <"$side_dir/$name.rc" 2>/dev/null; then
        echo "== FAILED: $label (did not run: see $side_dir/$name.log)"
        failed+=("$label")
        return
    fi
    if ((rc == 0)); then
        grep -E '^(test result|     Running)' "$side_dir/$name.log" || true
        echo "== ok: $label (${secs}s, beside the multi-node stages)"
    else
        tail -n 200 "$side_dir/$name.log"
        echo "== FAILED: $label (${secs}s, beside the multi-node stages)"
        failed+=("$label")
    fi
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
# Both lock files must already hold what the manifests ask for: a build that rewrites one
# fails the run's last check (the tree changed) after ~40 minutes; this says so at once.
for manifest in Cargo.toml fuzz/Cargo.toml; do
    cargo metadata -q --locked --format-version 1 --manifest-path "$manifest" >/dev/null ||
        { echo "== FAILED: ${manifest%Cargo.toml}Cargo.lock is stale: run cargo metadata --manifest-path $manifest and commit the lock file" >&2; exit 1; }
done
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

host=/usr/sbin/haproxy
echo "== cargo test: unit, real HAProxy $(haproxy_version "$host") (host), real engine"
run "unit + real HAProxy $(haproxy_version "$host") + engine" \
    env HAPROXY="$host" cargo test --workspace --all-targets --exclude swarm-lb-e2e
echo "== cargo test: end-to-end scenarios on the Swarm (two lanes of two stacks at a time)"
# The fault suite (tests/faults.rs) runs once, on 3.4 below, not on every line; the multi-node
# suite once, after both. The suites run as two cargo processes at once (e2e_lanes): the ACME
# suite spends most of its ~3 min waiting on a CA and an order lease, beside the scenarios.
run "e2e on $(haproxy_version "$host")" \
    e2e_lanes "--lib --bins --test scenarios --test status_page --test prometheus" \
    "--test acme --test policies --test tls --test observe"
# The compose file's default is 3.4: the single-node suite again on that line, with the fault
# suite (tests/faults.rs, ~2.5 min, in the lane beside the scenarios; SWARM_LB_FAULTS_LONG=1
# for the long versions).
echo "== cargo test: end-to-end scenarios on HAProxy $(haproxy_version "$PWD/target/haproxy/3.4/haproxy") (swarm-lb/haproxy:3.4-local)"
# mdbook (the book's builder, from crates.io: ~2.5 min of CPU on a fresh machine) installs
# beside this stage, whose stacks mostly wait; its result is used by the book stage at the end.
rm -rf "$side_dir" && mkdir -p "$side_dir"
side_stage book-install bash scripts/book.sh install &
book_install=$!
e2e_lanes_on_3_4() { SWARM_LB_E2E_HAPROXY_IMAGE=swarm-lb/haproxy:3.4-local e2e_lanes "$@"; }
run "e2e on $(haproxy_version "$PWD/target/haproxy/3.4/haproxy")" \
    e2e_lanes_on_3_4 "--lib --bins --test scenarios" "--test faults --test policies --test observe --test tls"

# Several edges on a real 3-node Swarm (three dockerds in network namespaces on this machine,
# scripts/multinode.sh): one test at a time (they share the edges), then the cluster goes.
# Beside the multi-node stages, which mostly wait on Docker, two background jobs: the
# real-HAProxy suites on 3.0, 3.2 and 3.4 and testssl.sh on 2.6 one after another (no Docker:
# real HAProxy processes on loopback, light on CPU), and the fuzz targets' build (nightly,
# sanitizer: ~4 min of CPU alone, ~10 under this load; the fuzz stage at the end only runs
# them). The multi-node tests' latency bounds (1 s) hold on this 2-core machine under such load
# (measured at load average 8-12). Their results are printed after the stack stage
# (side_report).
for line in "${MATRIX[@]}"; do
    bin=$PWD/target/haproxy/$line/haproxy
    [[ -x $bin ]] || { echo "no $bin: scripts/images.sh haproxy-$line builds it" >&2; exit 1; }
done
# Built first, so that the two do not wait on each other's build (cargo's lock).
cargo test --no-run -p swarm-lb-e2e --test multinode --test stack
wait "$book_install" || true
# The real-HAProxy suites' test binaries (built by the unit stage) run directly, not through
# cargo: a cargo beside the multi-node stages' cargo waited 5.8 min on its package-cache and
# artifact-directory locks in one run. Their paths are what cargo reports for them (the
# crate's binary, which they run, is reported too and is not a test).
mapfile -t suite_bins < <(cargo test --no-run --message-format=json "${HAPROXY_SUITES[@]}" |
    sed -n 's/.*"executable":"\([^"]*\/deps\/[^"]*\)".*/\1/p')
((${#suite_bins[@]} == ${#HAPROXY_SUITES[@]} / 2)) ||
    { echo "expected $((${#HAPROXY_SUITES[@]} / 2)) test binaries, cargo named: ${suite_bins[*]}" >&2; exit 1; }
# run_binaries_on HAPROXY TEST-BINARY ... : each test binary in turn with $HAPROXY set, all of
# them even after a failure, as `cargo test --no-fail-fast` runs them; fails if any failed.
run_binaries_on() {
    local bin rc=0
    local -x HAPROXY=$1
    shift
    for bin in "$@"; do
        echo "     Running $bin"
        "$bin" || rc=1
    done
    return "$rc"
}
shaping_bin=$(printf '%s\n' "${suite_bins[@]}" | grep '/shaping-')
(
    for line in "${MATRIX[@]}"; do
        side_stage "haproxy-$line" run_binaries_on "$PWD/target/haproxy/$line/haproxy" \
            "${suite_bins[@]}"
    done
    side_stage testssl env HAPROXY="$host" "$shaping_bin" --ignored --exact \
        testssl_finds_hsts_offered_on_the_https_edge_of_a_service_with_the_hsts_label
) &
side_job=$!
side_stage fuzz-build bash scripts/fuzz.sh build &
fuzz_build=$!
echo "== cargo test: multi-node Swarm, an edge on each of 3 nodes (integration/e2e/tests/multinode.rs)"
run "multi-node e2e" cargo test -p swarm-lb-e2e --test multinode -- --test-threads 1
bash scripts/multinode.sh down || echo "multinode: cluster teardown failed" >&2
# Again on 3.4, where every edge creates and deletes backends at runtime: the tests of routing,
# scaling (every edge holds the same tasks, no reload), cross-node convergence and drains. The
# crash, node-loss and agent-cost measurements run once, above (they time Swarm, not HAProxy).
echo "== cargo test: multi-node Swarm on HAProxy 3.4 (swarm-lb/haproxy:3.4-local)"
run "multi-node e2e on 3.4" env SWARM_LB_E2E_HAPROXY_IMAGE=swarm-lb/haproxy:3.4-local SWARM_LB_E2E_SCALE_OPS_OFF=5 \
    cargo test -p swarm-lb-e2e --test multinode -- --test-threads 1 \
    every_task_on_every_node scaling_2_9_3 a_new_task_on_another_node draining_a_node
bash scripts/multinode.sh down || echo "multinode: cluster teardown failed" >&2
# docker-stack.yml as users deploy it (issue 21), on HAProxy 3.4 (the stack's default line): the
# cluster again with a registry on its network, every image pushed there and pulled by name,
# `docker stack deploy`; routing and HTTPS from Docker secrets on every edge (the workers' copy
# jobs through the stack's `swarm-lb api-proxy`), the API's refusals, and a crash on mn3 served
# by every edge through the stack's agents.
echo "== cargo test: docker-stack.yml from the cluster's registry (integration/e2e/tests/stack.rs)"
# One drain round per run in CI (~30 s less; docs/several-nodes.md's figures are from 3-round runs).
run "stack e2e on 3.4" env SWARM_LB_E2E_HAPROXY_IMAGE=swarm-lb/haproxy:3.4-local SWARM_LB_E2E_DRAIN_ROUNDS=1 \
    cargo test -p swarm-lb-e2e --test stack -- --test-threads 1
bash scripts/multinode.sh down || echo "multinode: cluster teardown failed" >&2

# The stages that ran beside the multi-node ones.
wait "$side_job" "$fuzz_build" || true
for line in "${MATRIX[@]}"; do
    echo "== cargo test: real HAProxy $(haproxy_version "$PWD/target/haproxy/$line/haproxy") (Debian's $line line): ${HAPROXY_SUITES[*]}"
    side_report "haproxy-$line" "real HAProxy $(haproxy_version "$PWD/target/haproxy/$line/haproxy")"
done
echo "== testssl.sh on the HTTPS edge of a service with com.docker.lb.hsts (once, on $(haproxy_version "$host"))"
side_report testssl "testssl HSTS"

# The dockerd restart kills every container on the engine: alone, after everything else that
# uses Docker. On a machine shared with other Docker users, SWARM_LB_DOCKER_LOCK names a lock
# file they hold shared; this step takes it exclusively (the caller must not hold it itself).
echo "== fault: dockerd restart, alone (HAProxy 3.4)"
run "fault: dockerd restart" \
    ${SWARM_LB_DOCKER_LOCK:+flock -x "$SWARM_LB_DOCKER_LOCK"} \
    env SWARM_LB_E2E_HAPROXY_IMAGE=swarm-lb/haproxy:3.4-local \
    cargo test -p swarm-lb-e2e --test faults -- --ignored --test-threads 1 --nocapture
# A short soak (churn under load, resources sampled every 10 s); the record in docs/benchmarks.md is 30 min.
echo "== soak: ${SWARM_LB_SOAK:-60s} of churn under load"
run "soak" bash scripts/soak.sh "${SWARM_LB_SOAK:-60s}" -o "${TMPDIR:-/tmp}/swarm-lb-soak-ci"

# A short fuzz pass over every target (scripts/fuzz.sh; longer runs: scripts/fuzz.sh 600).
echo "== fuzz: labels, HAProxy replies, Docker JSON (15 s each)"
[[ $(cut -d' ' -f1 "$side_dir/fuzz-build.rc" 2>/dev/null) == 0 ]] ||
    { echo "== fuzz build failed:"; tail -n 40 "$side_dir/fuzz-build.log"; }
run "fuzz" bash scripts/fuzz.sh "${SWARM_LB_FUZZ_SECONDS:-15}"

# The book (docs/): it must build; tests/book.rs (in the unit stage) checked its links, its
# generated reference pages and the commands it names.
echo "== book: mdbook build docs"
[[ $(cut -d' ' -f1 "$side_dir/book-install.rc" 2>/dev/null) == 0 ]] ||
    { echo "== mdbook install failed:"; tail -n 40 "$side_dir/book-install.log"; }
run "book" bash scripts/book.sh build

# A run that changes the checkout (a stale lock rewritten, as fuzz/Cargo.lock was; an output
# file not ignored) fails: a clean checkout must stay clean, so that what CI built is what is
# committed.
tree_after=$(git status --porcelain --untracked-files=all)
if [[ $tree_after != "$tree_before" ]]; then
    echo "== FAILED: the run changed the tree (git status --porcelain):"
    diff <(printf '%s\n' "$tree_before") <(printf '%s\n' "$tree_after") | sed -n 's/^> /  /p' || true
    git --no-pager diff --stat
    failed+=("tree changed")
fi

if ((${#failed[@]})); then
    echo "== FAILED: ${failed[*]}"
    exit 1
fi
echo "== all passed"
