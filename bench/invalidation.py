#!/usr/bin/env python3
"""Cross-instance invalidation latency: PATCH a record on replica A, then poll replica B's cached
list until it shows the new value. Prints p50/p99 over N writes. The clock starts when A's
answer to the write has arrived and stops when B's answer with the new value has arrived.

usage: invalidation.py HOST_A HOST_B TOKEN [N] [--json FILE]   (hosts as 127.0.0.1:PORT)

The time includes B's reload of the page (a miss) after it has learned of the write; the figures
say how many writes needed more than one read of B (the others had been learned before B was
asked). bench/run.py imports measure() and runs it on two pages: the default one (a q search,
as bench/cache.sh has always measured) and `?limit=1` (the newest record, the cheapest reload).
The probe record is deleted at the end.
"""
import http.client
import json
import sys
import time


SEARCH_PAGE = "/api/v2/opportunities?q=invalidation%20probe&limit=1"
NEWEST_PAGE = "/api/v2/opportunities?limit=1"


def measure(host_a, host_b, token, n=200, path=SEARCH_PAGE):
    """Figures of n writes on host_a read back on host_b through the cached list `path` (which
    must contain the newest opportunity), as a dict (milliseconds)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    a = http.client.HTTPConnection(host_a, timeout=10)
    b = http.client.HTTPConnection(host_b, timeout=10)

    def call(conn, method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)

    status, record = call(a, "POST", "/api/v2/opportunities", {"name": "invalidation probe", "amount": 1})
    assert status == 201, record
    samples = []
    polls = 0
    retried = 0

    def probe_amount(page):
        for found in page["data"]:
            if found["id"] == record["id"]:
                return found["amount"]
        return None

    try:
        for i in range(n):
            call(b, "GET", path)  # make sure B holds the old answer in L1
            amount = 2 + i
            status, _ = call(a, "PATCH", f"/api/v2/opportunities/{record['id']}", {"amount": amount})
            assert status == 200
            started = time.perf_counter()
            tries = 0
            while True:
                status, page = call(b, "GET", path)
                tries += 1
                if status == 200 and probe_amount(page) == amount:
                    break
                if time.perf_counter() - started > 5:
                    raise SystemExit(f"write {i} never reached {host_b}")
            samples.append((time.perf_counter() - started) * 1000)
            polls += tries
            retried += tries > 1
    finally:
        try:
            call(a, "DELETE", f"/api/v2/opportunities/{record['id']}")
        except Exception:  # the caller's cleanup removes leftovers
            pass
    samples.sort()
    return {
        "writes": n,
        "path": path,
        "reads_of_b": polls,
        "writes_needing_more_than_one_read": retried,
        "p50_ms": samples[len(samples) // 2],
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "max_ms": samples[-1],
        "mean_ms": sum(samples) / len(samples),
    }


def main():
    args = sys.argv[1:]
    json_path = None
    if "--json" in args:
        at = args.index("--json")
        json_path = args[at + 1]
        del args[at : at + 2]
    host_a, host_b, token = args[0], args[1], args[2]
    n = int(args[3]) if len(args) > 3 else 200
    figures = measure(host_a, host_b, token, n)
    print(
        f"cross-instance invalidation over {n} writes: p50 {figures['p50_ms']:.2f} ms, "
        f"p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.2f} ms"
    )
    if json_path:
        with open(json_path, "w") as out:
            json.dump(figures, out)


if __name__ == "__main__":
    main()
