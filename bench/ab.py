#!/usr/bin/env python3
"""A/B of two release binaries of the service in one run: L1-hit throughput of the list route
and cross-instance invalidation latency. Run it through bench/ab.sh, which builds both.

usage: ab.py OLD_BIN NEW_BIN OUT_PREFIX

Both binaries serve one database (DATABASE_URL, default aishacrm_ab on the local server; seeded
with one tenant of 500 opportunities, so the first page is a full 50-record page) and one Redis
(REDIS_URL), each binary with a key prefix of its own. For each binary: one server for the
throughput runs (RUST_LOG=warn, as bench/run.py's L1 scenario) and two replicas for the
invalidation runs.

- L1 hits: `wrk -t2 -c64` on GET /api/v2/opportunities, AB_ROUNDS rounds (default 6) of
  AB_SECONDS s (default 5) per binary after 1 s of warm-up, the order alternating per round
  (old new, new old, ...). The verdict is the median of the per-round new/old ratios.
- Invalidation: bench/invalidation.py's measure() (PATCH on replica A, poll replica B's cached
  `?limit=1` page until it shows it) with AB_WRITES writes (default 200), AB_INVALIDATION_RUNS
  runs per binary (default 3), alternating; the figures are the medians of the runs' p50 and p99.

Every process it starts is stopped by PID; its Redis keys (its own prefixes) are unlinked and
the database is dropped at the end. Writes OUT_PREFIX.json and OUT_PREFIX.md.
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import invalidation  # noqa: E402
from processes import env_int, stop  # noqa: E402

HOST = "127.0.0.1"
PORTS = {"old": (18401, 18402, 18403), "new": (18411, 18412, 18413)}
LIST = "/api/v2/opportunities"
SECRET = "ab-secret"


def free(port):
    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) != 0


def wait_ready(port, process, log_path):
    import http.client

    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            with open(log_path, errors="replace") as log:
                raise SystemExit(f"server on {port} exited; log:\n{log.read()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/health/ready")
            response = conn.getresponse()
            body = json.loads(response.read() or b"{}")
            if response.status == 200 and body.get("redis") == "up":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on {port} never became ready")


def wrk(port, token, seconds):
    argv = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}",
            f"http://{HOST}:{port}{LIST}"]
    text = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"rps": rate, "p99_ms": float(p99.group(1)) * scale,
            "non_2xx": int(errors.group(1)) if errors else 0}


def main():
    old_bin, new_bin, out = sys.argv[1], sys.argv[2], sys.argv[3]
    rounds, seconds = env_int("AB_ROUNDS", 6), env_int("AB_SECONDS", 5)
    writes, runs = env_int("AB_WRITES", 200), env_int("AB_INVALIDATION_RUNS", 3)
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aishacrm_ab?sslmode=disable")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    run_id = os.getpid()
    prefixes = {"old": f"aishacrm-ab-old-{run_id}", "new": f"aishacrm-ab-new-{run_id}"}
    bins = {"old": old_bin, "new": new_bin}
    for ports in PORTS.values():
        for port in ports:
            if not free(port):
                raise SystemExit(f"port {port} is taken")
    processes = []
    work = out + ".tmp"
    os.makedirs(work, exist_ok=True)
    base_env = dict(os.environ, DATABASE_URL=database_url, REDIS_URL=redis_url, JWT_SECRET=SECRET,
                    RUST_LOG="warn", WORKERS="0", CACHE_L1_MAX_MB="64")
    try:
        subprocess.run([new_bin, "migrate"], env=base_env, check=True)
        tenant = str(uuid.uuid4())
        subprocess.run([new_bin, "seed", "--tenant", tenant, "--per-tenant", "500"], env=base_env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        token = subprocess.run([new_bin, "token", "--tenant", tenant], env=base_env, check=True,
                               capture_output=True, text=True).stdout.strip()

        for which, ports in PORTS.items():
            for index, port in enumerate(ports):
                env = dict(base_env, BIND=f"{HOST}:{port}", CACHE_KEY_PREFIX=prefixes[which])
                log_path = os.path.join(work, f"{which}-{index}.log")
                with open(log_path, "wb") as log:
                    process = subprocess.Popen([bins[which], "serve"], env=env, stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT)
                processes.append(process)
                wait_ready(port, process, log_path)

        throughput = {"old": [], "new": []}
        ratios = []
        for round_ in range(rounds):
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            figures = {}
            for which in order:
                port = PORTS[which][0]
                wrk(port, token, 1)
                figures[which] = wrk(port, token, seconds)
                throughput[which].append(figures[which])
            ratios.append(figures["new"]["rps"] / figures["old"]["rps"])
            print(f"round {round_ + 1}: old {figures['old']['rps']:.0f} req/s, new {figures['new']['rps']:.0f} "
                  f"req/s, new/old {ratios[-1]:.3f}", flush=True)

        invalidations = {"old": [], "new": []}
        for run in range(runs):
            for which in (("old", "new") if run % 2 == 0 else ("new", "old")):
                a, b = PORTS[which][1], PORTS[which][2]
                figures = invalidation.measure(f"{HOST}:{a}", f"{HOST}:{b}", token, writes,
                                               invalidation.NEWEST_PAGE)
                invalidations[which].append(figures)
                print(f"invalidation {which}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms",
                      flush=True)
    finally:
        for process in processes:
            stop(process)
        for prefix in prefixes.values():
            subprocess.run(["sh", "-c", f"redis-cli -u {redis_url} --scan --pattern '{prefix}:*' | "
                            f"xargs -r -n 500 redis-cli -u {redis_url} UNLINK > /dev/null"], check=False)
        name = database_url.rsplit("/", 1)[1]
        maintenance = database_url.rsplit("/", 1)[0] + "/postgres"
        subprocess.run(["psql", maintenance, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
                       check=False)

    def median(values):
        return statistics.median(values)

    summary = {
        "old_bin": old_bin,
        "new_bin": new_bin,
        "l1_list": {
            "old_rps_median": median([run["rps"] for run in throughput["old"]]),
            "new_rps_median": median([run["rps"] for run in throughput["new"]]),
            "new_over_old_per_round": ratios,
            "new_over_old_median": median(ratios),
            "old_p99_ms_median": median([run["p99_ms"] for run in throughput["old"]]),
            "new_p99_ms_median": median([run["p99_ms"] for run in throughput["new"]]),
            "runs": throughput,
        },
        "invalidation": {
            which: {
                "p50_ms_median": median([run["p50_ms"] for run in invalidations[which]]),
                "p99_ms_median": median([run["p99_ms"] for run in invalidations[which]]),
                "max_ms": max(run["max_ms"] for run in invalidations[which]),
                "runs": invalidations[which],
            }
            for which in ("old", "new")
        },
    }
    with open(out + ".json", "w") as output:
        json.dump(summary, output, indent=2)
    l1, inv = summary["l1_list"], summary["invalidation"]
    verdict = "passes" if l1["new_over_old_median"] >= 0.95 else "FAILS"
    lines = [
        f"# A/B: {os.path.basename(old_bin)} (old) against {os.path.basename(new_bin)} (new)",
        "",
        f"Command: `bench/ab.sh <old commit>`; {rounds} alternating rounds of {seconds} s (`wrk -t2 -c64`) "
        f"for the L1 list, {runs} alternating runs of {writes} writes for the invalidation.",
        "",
        "| figure | old | new | new ÷ old |",
        "|---|---|---|---|",
        f"| L1 list hits, req/s (median) | {l1['old_rps_median']:,.0f} | {l1['new_rps_median']:,.0f} | "
        f"{l1['new_over_old_median']:.3f} (median of per-round ratios) |",
        f"| L1 list p99 at 64 connections, ms (median) | {l1['old_p99_ms_median']:.2f} | "
        f"{l1['new_p99_ms_median']:.2f} | |",
        f"| invalidation p50, ms (median of runs) | {inv['old']['p50_ms_median']:.2f} | "
        f"{inv['new']['p50_ms_median']:.2f} | |",
        f"| invalidation p99, ms (median of runs) | {inv['old']['p99_ms_median']:.2f} | "
        f"{inv['new']['p99_ms_median']:.2f} | |",
        f"| invalidation max, ms | {inv['old']['max_ms']:.2f} | {inv['new']['max_ms']:.2f} | |",
        "",
        "Per-round new ÷ old: " + ", ".join(f"{ratio:.3f}" for ratio in ratios),
        "",
        f"Target: L1-hit throughput falls by at most 5 % (new ÷ old ≥ 0.95): **{verdict}**.",
        "",
    ]
    with open(out + ".md", "w") as output:
        output.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
