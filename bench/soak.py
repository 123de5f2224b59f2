#!/usr/bin/env python3
"""Soak: mixed traffic at about 70 % of peak over two replicas for SOAK_MINUTES (default 10),
recording per minute the throughput, p50/p99 and errors, and every 10 s each replica's RSS.
Writes bench/results/soak-<commit>-<date>.md and .json. Not part of CI.

usage: bench/soak.py            (env: DATABASE_URL, JWT_SECRET, REDIS_URL, SOAK_MINUTES)
Needs the seeded benchmark database (bench/run.sh or bench/uncached.sh seed it) and wrk.
"""
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release", "aishacrm")
PORTS = (18350, 18351)
CONNECTIONS = 16  # per replica
MINUTES = int(os.environ.get("SOAK_MINUTES", "10"))
DB = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/aishacrm_bench?sslmode=disable")
os.environ.setdefault("JWT_SECRET", "bench-secret")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = os.getpid()
PREFIX = f"aishacrm-soak-{RUN}"
LEAD_SOURCE = f"bench-soak-{RUN}"


def psql(sql):
    out = subprocess.run(["psql", DB, "-Atc", sql], check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def token(tenant):
    return subprocess.run([BIN, "token", "--tenant", tenant], check=True, capture_output=True,
                          text=True).stdout.strip()


def lua_script(pace_ms, path):
    tenants = psql("SELECT tenant_id FROM opportunities GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 20")
    lines = [f'LEAD_SOURCE = "{LEAD_SOURCE}"', "BENCH_TENANTS = {"]
    for tenant in tenants:
        opportunities = psql(f"SELECT id FROM opportunities WHERE tenant_id = '{tenant}' ORDER BY id LIMIT 20")
        accounts = psql(f"SELECT id FROM accounts WHERE tenant_id = '{tenant}' ORDER BY id LIMIT 5")
        lines.append(f'  {{ id = "{tenant}", token = "{token(tenant)}", '
                     f'opportunities = {{ {", ".join(repr(i) for i in opportunities)} }}, '
                     f'accounts = {{ {", ".join(repr(i) for i in accounts)} }} }},')
    lines.append("}")
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
        for part in ("common.lua", "mixed.lua", "report.lua"):
            with open(os.path.join(HERE, "wrk", part)) as source:
                out.write(f"\n-- {part}\n" + source.read())
        if pace_ms:
            out.write(f"\ndelay = function() return {pace_ms} end\n")


def wrk(port, seconds, script, seed):
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "10s",
            "-s", script, f"http://127.0.0.1:{port}/", "--", str(seed)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def figures(process):
    out, _ = process.communicate()
    match = re.search(r"WRKJSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    return {"rps": raw["requests"] / seconds, "p50_ms": raw["latency_us"]["p50"] / 1000,
            "p99_ms": raw["latency_us"]["p99"] / 1000, "errors": sum(raw["errors"].values()),
            "requests": raw["requests"]}


def both(seconds, script):
    processes = [wrk(port, seconds, script, int(time.time()) + i) for i, port in enumerate(PORTS)]
    runs = [figures(process) for process in processes]
    return {"rps": sum(r["rps"] for r in runs), "p50_ms": max(r["p50_ms"] for r in runs),
            "p99_ms": max(r["p99_ms"] for r in runs), "errors": sum(r["errors"] for r in runs),
            "requests": sum(r["requests"] for r in runs)}


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    servers = []
    stop = threading.Event()
    try:
        for port in PORTS:
            env = dict(os.environ, BIND=f"127.0.0.1:{port}", CACHE_KEY_PREFIX=PREFIX, RUST_LOG="warn")
            servers.append(subprocess.Popen([BIN, "serve"], env=env, stderr=subprocess.DEVNULL))
        for port in PORTS:
            for _ in range(100):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                        if b'"redis":"up"' in r.read():
                            break
                except OSError:
                    pass
                time.sleep(0.1)
        work = os.path.join(HERE, "results")
        unpaced = os.path.join(work, f"soak-{RUN}-unpaced.lua")
        lua_script(0, unpaced)
        both(10, unpaced)  # warm the caches
        peak = both(15, unpaced)
        target = 0.7 * peak["rps"]
        # Each connection waits `pace` ms before its next request: CONNECTIONS * 2 connections
        # then send at most target requests per second.
        pace = max(1, int(1000 * CONNECTIONS * len(PORTS) / target))
        paced = os.path.join(work, f"soak-{RUN}-paced.lua")
        lua_script(pace, paced)
        samples = []

        def sample():
            started = time.time()
            while not stop.is_set():
                samples.append({"t_s": round(time.time() - started, 1),
                                "rss_mib": [round(rss_mib(server.pid), 1) for server in servers]})
                stop.wait(10)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        minutes = []
        for minute in range(MINUTES):
            run = both(60, paced)
            run["minute"] = minute + 1
            minutes.append(run)
            print(f"minute {minute + 1}: {run['rps']:.0f} req/s, p99 {run['p99_ms']:.1f} ms, "
                  f"errors {run['errors']}, RSS {samples[-1]['rss_mib']}", flush=True)
        stop.set()
        sampler.join()
        for path in (unpaced, paced):
            os.remove(path)
    finally:
        stop.set()
        for server in servers:
            server.kill()
            server.wait()
        keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"{PREFIX}:*"], capture_output=True,
                              text=True).stdout.split()
        for start in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "unlink", *keys[start:start + 500]], capture_output=True)
        psql(f"DELETE FROM leads WHERE source = '{LEAD_SOURCE}'")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "nogit"
    name = f"soak-{commit}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    first_rss, last_rss = samples[1]["rss_mib"], samples[-1]["rss_mib"]  # after the first 10 s
    result = {"peak": peak, "target_rps": target, "pace_ms": pace, "connections": CONNECTIONS * len(PORTS),
              "minutes": minutes, "rss": samples,
              "p99_drift_ms": minutes[-1]["p99_ms"] - minutes[0]["p99_ms"],
              "rss_drift_mib": [round(b - a, 1) for a, b in zip(first_rss, last_rss)],
              "errors": sum(m["errors"] for m in minutes)}
    with open(os.path.join(HERE, "results", name + ".json"), "w") as out:
        json.dump(result, out, indent=1)
    lines = [f"## Soak {name}", "",
             f"Commit `{commit}`. Two replicas, mixed traffic (bench/wrk/mixed.lua: 20 tenants, 95 % reads, "
             f"5 % writes), {CONNECTIONS} connections per replica, each pausing {pace} ms between requests: "
             f"target {target:.0f} req/s = 70 % of the measured peak {peak['rps']:.0f} req/s "
             f"(p99 {peak['p99_ms']:.1f} ms at {CONNECTIONS} connections per replica, unpaced).", "",
             "| minute | req/s | p50 ms | p99 ms | errors | RSS A MiB | RSS B MiB |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for m in minutes:
        at = min(samples, key=lambda s: abs(s["t_s"] - 60 * m["minute"]))
        lines.append(f"| {m['minute']} | {m['rps']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['errors']} | "
                     f"{at['rss_mib'][0]} | {at['rss_mib'][1]} |")
    lines += ["", f"Errors: {result['errors']}. p99 drift (last minute − first): {result['p99_drift_ms']:+.1f} ms. "
              f"RSS drift (last sample − the one at 10 s), replica A / B: {result['rss_drift_mib'][0]:+.1f} / "
              f"{result['rss_drift_mib'][1]:+.1f} MiB.", ""]
    with open(os.path.join(HERE, "results", name + ".md"), "w") as out:
        out.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
