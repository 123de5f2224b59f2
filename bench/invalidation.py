#!/usr/bin/env python3
"""Cross-instance invalidation latency: PATCH a record on replica A, then poll replica B's cached
list until it shows the new value. Prints p50/p99 over N writes.

usage: invalidation.py HOST_A HOST_B TOKEN [N]   (hosts as 127.0.0.1:PORT)
"""
import http.client
import json
import sys
import time


def main():
    host_a, host_b, token, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 200
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    a = http.client.HTTPConnection(host_a)
    b = http.client.HTTPConnection(host_b)

    def call(conn, method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)

    status, record = call(a, "POST", "/api/v2/opportunities", {"name": "invalidation probe", "amount": 1})
    assert status == 201, record
    path = "/api/v2/opportunities?q=invalidation%20probe&limit=1"
    samples = []
    for i in range(n):
        call(b, "GET", path)  # make sure B holds the old answer in L1
        amount = 2 + i
        status, _ = call(a, "PATCH", f"/api/v2/opportunities/{record['id']}", {"amount": amount})
        assert status == 200
        started = time.perf_counter()
        while True:
            status, page = call(b, "GET", path)
            if status == 200 and page["data"] and page["data"][0]["amount"] == amount:
                break
            if time.perf_counter() - started > 5:
                raise SystemExit(f"write {i} never reached {host_b}")
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"cross-instance invalidation over {n} writes: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {samples[-1]:.2f} ms")


if __name__ == "__main__":
    main()
