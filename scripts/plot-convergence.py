#!/usr/bin/python3
"""Draw the convergence histogram of a bench-swarm run as a PNG.

    cargo run --release -p swarm-lb-bench --bin bench-swarm -- --phases convergence
    python3 scripts/plot-convergence.py /tmp/bench-swarm-runtime-<pid>-samples.tsv \
        /tmp/bench-swarm-reload-<pid>-samples.tsv -o docs/convergence.png

Each input is the per-sample file bench-swarm saves (its notes print the paths); the strategy
is read from the file name. Two panels: a new task, from Docker's Status.Timestamp (running)
to HAProxy holding it ready; a stopping task, from the moment Swarm set its desired state to
shutdown (UpdatedAt) to HAProxy taking no new traffic to it. Milliseconds on a log axis.
Needs matplotlib (Debian: apt-get install python3-matplotlib).
"""

import argparse
import csv
import math
import os
import re
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot-convergence: matplotlib is missing: apt-get install python3-matplotlib")

PANELS = [
    ("task_running", "new task: Status.Timestamp (running) -> HAProxy ready"),
    ("desired_shutdown", "stopping task: desired shutdown (UpdatedAt) -> not ready"),
]


def load(path):
    """{docker_ref: [ms, ...]} of one samples file."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            ref, at = int(row["ref_ns"]), int(row["haproxy_ns"])
            if ref <= 0 or at <= 0:
                continue
            out.setdefault(row["docker_ref"], []).append((at - ref) / 1e6)
    return out


def percentile(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", nargs="+", help="bench-swarm-<strategy>-<pid>-samples.tsv")
    ap.add_argument("-o", "--output", default="docs/convergence.png")
    ap.add_argument("--title", default="swarm-lb convergence (bench-swarm)")
    args = ap.parse_args()

    runs = []
    for path in args.samples:
        m = re.search(r"bench-swarm-([a-z]+)-", os.path.basename(path))
        runs.append((m.group(1) if m else os.path.basename(path), load(path)))

    # Samples may be slightly negative (HAProxy polled a hair before Docker's stamp): floor at
    # 0.1 ms for the log axis.
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 4.5), sharey=False)
    bins = [0.1 * 2 ** (i / 2) for i in range(0, 27)]  # 0.1 ms .. ~819 ms
    colors = {"runtime": "#1f77b4", "reload": "#d62728"}
    for ax, (ref, title) in zip(axes, PANELS):
        for name, data in runs:
            ms = [max(x, 0.1) for x in data.get(ref, [])]
            if not ms:
                continue
            label = f"{name}: n={len(ms)}, p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms"
            ax.hist(ms, bins=bins, alpha=0.6, label=label, color=colors.get(name))
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_ylabel("tasks")
        ax.set_title(title, fontsize=10)
        for target, style in ((20, "--"), (100, ":")):
            ax.axvline(target, color="gray", linestyle=style, linewidth=1)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(args.title + "  (dashed: p50 target 20 ms, dotted: p99 target 100 ms)", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    fig.savefig(args.output, dpi=100)
    print(f"plot-convergence: wrote {args.output}")


if __name__ == "__main__":
    main()
