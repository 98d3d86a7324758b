#!/usr/bin/python3
"""Soak swarm-lb: churn a Swarm under continuous load and sample resources every 10 s.

    scripts/soak.sh DURATION [-o PREFIX]     (DURATION: 60, 90s, 30m, 1h)

Brings up docker-compose.yml under a project of its own (local images, loopback ports, a
service cluster of its own so other stacks on the engine are left alone), creates a routed
service `web` (3 replicas) that a load generator hits for the whole run, and churns around it:
scaling web, rolling updates of web in both orders, creating and removing routed services,
editing the hosts label of another. Every 10 s it writes one CSV row: swarm-lb's RSS and open
fds, HAProxy's process count, total RSS and fds, the requests of those 10 s and how many
failed (non-2xx or connection errors; every request on a new connection, nothing retried).
Writes PREFIX.csv and PREFIX.png and prints a summary with the first-to-last growth of each
resource line. Exits 1 if a request failed or a resource line grew past its bound.
"""

import argparse
import csv
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
APP1, APP2 = "swarm-lb/testapp:1", "swarm-lb/testapp:2"
SAMPLE_EVERY = 10.0


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def duration(text):
    m = re.fullmatch(r"(\d+)([smh]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 60, 90s, 30m, 1h)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args, check=True):
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


class Load:
    """Workers sending GET / with a Host header on a new connection each, at a fixed pace."""

    def __init__(self, port, host, workers=4, every=0.02):
        self.port, self.host, self.every = port, host, every
        self.lock = threading.Lock()
        self.ok = self.failed = 0
        self.samples = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def one(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", "/", headers={"Host": self.host, "Connection": "close"})
            r = c.getresponse()
            r.read()
            return r.status, None
        except Exception as e:  # every failure counts; the kind goes to the samples
            return None, f"{type(e).__name__}: {e}"
        finally:
            c.close()

    def run(self):
        nxt = time.monotonic()
        while not self.stop.is_set():
            status, err = self.one()
            with self.lock:
                if status is not None and 200 <= status < 300:
                    self.ok += 1
                else:
                    self.failed += 1
                    if len(self.samples) < 20:
                        self.samples.append(f"{time.strftime('%H:%M:%S')} {status or err}")
            nxt += self.every
            time.sleep(max(0.0, nxt - time.monotonic()))

    def counts(self):
        with self.lock:
            return self.ok, self.failed


def proc(pid, field):
    try:
        if field == "fds":
            return len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])  # kB
    except OSError:
        return 0
    return 0


def descendants(pid):
    """pid and every process below it (/proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def container_pids(name):
    """Host pids of the processes in a container: its main process and its descendants."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", name, check=False)
    if not pid or pid == "0":
        return []
    return descendants(int(pid))


class Churn(threading.Thread):
    """Changes the Swarm in a fixed cycle until stopped; counts each kind."""

    def __init__(self, net, cluster, web, edit):
        super().__init__(daemon=True)
        self.net, self.cluster, self.web, self.edit = net, cluster, web, edit
        self.stop = threading.Event()
        self.done = {}
        self.errors = []
        self.temp = []

    def labels(self, host):
        return ["--label", f"com.docker.lb.hosts={host}", "--label", "com.docker.lb.port=8080",
                "--label", f"com.docker.lb.service_cluster={self.cluster}"]

    def step(self, i):
        kind = ["scale-up", "update", "create", "label", "scale-down", "remove", "update"][i % 7]
        if kind == "scale-up":
            docker("service", "scale", "--detach", f"{self.web}=5")
        elif kind == "scale-down":
            docker("service", "scale", "--detach", f"{self.web}=3")
        elif kind == "update":
            image = APP2 if (i // 7) % 2 == 0 else APP1
            order = "start-first" if (i // 14) % 2 == 0 else "stop-first"
            docker("service", "update", "--detach=false", "--quiet", "--no-resolve-image",
                   "--update-order", order, "--image", image, self.web)
        elif kind == "create":
            name = f"{self.cluster}-tmp{i}"
            docker("service", "create", "--detach", "--quiet", "--no-resolve-image", "--name", name,
                   "--network", self.net, "--replicas", "2", "--env", "TASK_NAME={{.Task.Name}}",
                   *self.labels(f"{name}.test"), APP1)
            self.temp.append(name)
        elif kind == "remove":
            if self.temp:
                docker("service", "rm", self.temp.pop(0))
        elif kind == "label":
            docker("service", "update", "--detach", "--quiet", "--no-resolve-image",
                   "--label-add", f"com.docker.lb.hosts=edit{i}.test,edit.test", self.edit)
        self.done[kind] = self.done.get(kind, 0) + 1

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.step(i)
            except RuntimeError as e:
                self.errors.append(str(e))
            i += 1
            self.stop.wait(4)


def wait_for(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise RuntimeError(f"timed out ({timeout}s) waiting for {what}")


def plot(rows, path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("soak: matplotlib is missing: apt-get install python3-matplotlib")
    t = [float(r["t_s"]) / 60 for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    panels = [
        (axes[0][0], "RSS (MiB)", [("swarm_lb_rss_kb", "swarm-lb", 1 / 1024),
                                    ("haproxy_rss_kb", "HAProxy (all processes)", 1 / 1024)]),
        (axes[0][1], "open fds", [("swarm_lb_fds", "swarm-lb", 1), ("haproxy_fds", "HAProxy", 1)]),
        (axes[1][0], "HAProxy processes", [("haproxy_procs", "master + workers", 1)]),
        (axes[1][1], "requests per 10 s", [("requests", "requests", 1), ("failed", "failed", 1)]),
    ]
    for ax, ylabel, series in panels:
        for key, label, scale in series:
            ax.plot(t, [float(r[key]) * scale for r in rows], label=label)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, linewidth=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    log(f"wrote {path}")


def growth(rows, key):
    """Last quarter's mean minus first quarter's mean (after the first sample), in %."""
    v = [float(r[key]) for r in rows[1:]]
    q = max(1, len(v) // 4)
    first, last = sum(v[:q]) / q, sum(v[-q:]) / q
    return 0.0 if first == 0 else 100.0 * (last - first) / first


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("duration", type=duration)
    ap.add_argument("-o", "--output", default=f"/tmp/swarm-lb-soak-{os.getpid()}",
                    help="prefix of the CSV and PNG written")
    args = ap.parse_args()

    project = f"slbsoak{os.getpid()}"
    cluster = f"soak{os.getpid()}"
    # Every port the compose file publishes, on loopback and free: a product stack on this
    # engine (scripts/run.sh) holds the defaults.
    ports = {k: free_port() for k in ("http", "https", "metrics", "stats")}
    env = dict(os.environ,
               COMPOSE_PROJECT_NAME=project,
               HAPROXY_IMAGE=os.environ.get("SOAK_HAPROXY_IMAGE", "swarm-lb/haproxy:2.6-local"),
               SWARM_LB_IMAGE=os.environ.get("SWARM_LB_IMAGE", "swarm-lb/swarm-lb:local"),
               SWARM_LB_HTTP_PORT=f"127.0.0.1:{ports['http']}",
               SWARM_LB_HTTPS_PORT=f"127.0.0.1:{ports['https']}",
               SWARM_LB_METRICS_PORT=f"127.0.0.1:{ports['metrics']}",
               SWARM_LB_STATS_PORT=f"127.0.0.1:{ports['stats']}",
               SWARM_LB_HAPROXY_CONTAINER=f"{project}-haproxy",
               SWARM_LB_SERVICE_CLUSTER=cluster,
               DOCKER_HOST="unix:///var/run/docker.sock")
    compose = ["docker-compose", "-f", os.path.join(REPO, "docker-compose.yml")]
    haproxy_c, swarm_lb_c = f"{project}-haproxy", f"{project}_swarm-lb_1"
    net = f"{cluster}-net"
    web, edit = f"{cluster}-web", f"{cluster}-edit"
    churn = None
    load = None
    try:
        log(f"project {project}, HAProxy {env['HAPROXY_IMAGE']}, swarm-lb {env['SWARM_LB_IMAGE']}")
        subprocess.run([*compose, "up", "-d"], env=env, check=True, capture_output=True)
        docker("network", "create", "-d", "overlay", "--attachable", net)
        base = ["--detach", "--quiet", "--no-resolve-image", "--network", net,
                "--env", "TASK_NAME={{.Task.Name}}", "--label", "com.docker.lb.port=8080",
                "--label", f"com.docker.lb.service_cluster={cluster}"]
        docker("service", "create", "--name", web, "--replicas", "3", "--stop-grace-period", "20s",
               "--label", "com.docker.lb.hosts=web.test", *base, APP1)
        docker("service", "create", "--name", edit, "--replicas", "1",
               "--label", "com.docker.lb.hosts=edit.test", *base, APP1)

        def answers():
            c = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=2)
            try:
                c.request("GET", "/", headers={"Host": "web.test"})
                return c.getresponse().status == 200
            except OSError:
                return False
            finally:
                c.close()

        wait_for("web.test answering through HAProxy", answers, 180)
        log("web.test answers; load and churn start")
        load = Load(ports["http"], "web.test")
        churn = Churn(net, cluster, web, edit)
        churn.start()

        rows = []
        start = time.monotonic()
        last_ok, last_failed = 0, 0
        csv_path, png_path = args.output + ".csv", args.output + ".png"
        os.makedirs(os.path.dirname(csv_path) or ".", exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            fields = ["t_s", "swarm_lb_rss_kb", "swarm_lb_fds", "haproxy_procs", "haproxy_rss_kb",
                      "haproxy_fds", "requests", "failed"]
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            n = 0
            while True:
                n += 1
                target = start + n * SAMPLE_EVERY
                time.sleep(max(0.0, target - time.monotonic()))
                ok, failed = load.counts()
                slb = container_pids(swarm_lb_c)
                hap = container_pids(haproxy_c)
                row = {
                    "t_s": round(time.monotonic() - start),
                    "swarm_lb_rss_kb": sum(proc(p, "rss") for p in slb),
                    "swarm_lb_fds": sum(proc(p, "fds") for p in slb),
                    "haproxy_procs": len(hap),
                    "haproxy_rss_kb": sum(proc(p, "rss") for p in hap),
                    "haproxy_fds": sum(proc(p, "fds") for p in hap),
                    "requests": (ok - last_ok) + (failed - last_failed),
                    "failed": failed - last_failed,
                }
                last_ok, last_failed = ok, failed
                rows.append(row)
                w.writerow(row)
                f.flush()
                if time.monotonic() - start >= args.duration:
                    break
        churn.stop.set()
        load.stop.set()
        ok, failed = load.counts()
        log(f"wrote {csv_path}")
        kinds = ", ".join(f"{v} {k}" for k, v in sorted(churn.done.items()))
        plot(rows, png_path, f"swarm-lb soak: {args.duration / 60:g} min of churn under load: "
             f"{ok + failed} requests, {failed} failed\nchurn: {kinds}")
        g = {k: growth(rows, k) for k in ("swarm_lb_rss_kb", "swarm_lb_fds", "haproxy_procs",
                                           "haproxy_rss_kb", "haproxy_fds")}
        print(f"soak: {args.duration}s, {len(rows)} samples, {ok + failed} requests, {failed} failed, "
              f"churn {json.dumps(churn.done)}, churn errors {len(churn.errors)}; growth first->last "
              f"quarter: " + ", ".join(f"{k} {v:+.1f}%" for k, v in g.items()))
        if load.samples:
            print(f"soak: first failures: {load.samples}")
        for e in churn.errors[:5]:
            print(f"soak: churn error: {e}")
        bad = failed > 0 or churn.errors
        # A leak shows as steady growth; fds and process counts must not drift, RSS may settle.
        for key, bound in (("swarm_lb_fds", 20), ("haproxy_procs", 50), ("swarm_lb_rss_kb", 25)):
            if len(rows) >= 8 and g[key] > bound:
                print(f"soak: {key} grew {g[key]:+.1f}% (bound {bound}%)")
                bad = True
        return 1 if bad else 0
    finally:
        if churn:
            churn.stop.set()
        if load:
            load.stop.set()
        services = docker("service", "ls", "-q", "--filter", f"label=com.docker.lb.service_cluster={cluster}",
                          check=False)
        if services:
            docker("service", "rm", *services.split(), check=False)
        subprocess.run([*compose, "down", "-v", "-t", "5"], env=env, capture_output=True)
        for _ in range(150):  # tasks keep the network until they stop (grace period 20 s)
            if subprocess.run([DOCKER, "network", "rm", net], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
