#!/usr/bin/env python3
"""Stale-answer checker for the mixed-traffic scenario of bench/run.py (also usable alone).

A writer thread PATCHes the amount of a probe opportunity with increasing values, alternating
between the replicas, and records each acknowledged value with the time its answer arrived. One
reader thread per replica keeps reading cached answers that contain the probe (the default first
page of opportunities, a filtered page, the dashboard bundle) and compares the amount it sees
with the acknowledged writes:

- stale: the read started more than WINDOW (100 ms, the contract's bound) after an acknowledged
  write, and shows an older value;
- read-your-writes violation: the read went to the replica that acknowledged a write, started
  after that acknowledgement, and shows an older value (the contract wants it at once there);
- within window: another replica's write acknowledged less than WINDOW before the read started
  is not shown yet (allowed; counted for information).

usage: stale_check.py HOST_A HOST_B TOKEN [SECONDS] [--write-to-a-only]
(--write-to-a-only is a negative control: with replicas that share no bus, e.g. REDIS_URL=none,
B never sees A's writes and the checker must count stale answers.)
"""
import http.client
import json
import os
import sys
import threading
import time

WINDOW = 0.100
READ_PATHS = (
    "/api/v2/opportunities",
    "/api/v2/opportunities?stage=prospecting&limit=10",
    "/api/v2/dashboard/bundle",
)


class Client:
    def __init__(self, host, token):
        self.host = host
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection(host, timeout=10)

    def call(self, method, path, body=None):
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                                  headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, response.getheader("X-Cache"), (json.loads(data) if data else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, timeout=10)
                if attempt:
                    raise


class StaleChecker:
    def __init__(self, hosts, token, write_interval=0.02, name=None, write_to=None):
        self.hosts = list(hosts)
        self.write_to = list(write_to) if write_to is not None else list(range(len(self.hosts)))
        self.token = token
        self.write_interval = write_interval
        self.name = name or f"bench-probe {os.getpid()}"
        self.lock = threading.Lock()
        self.ack_times, self.ack_values, self.ack_hosts = [], [], []
        self.stop_event = threading.Event()
        self.threads = []
        self.probe = None
        self.figures = {
            "writes": 0, "write_errors": 0, "reads": 0, "read_errors": 0, "missing": 0,
            "stale": 0, "ryw_violations": 0, "within_window": 0, "worst_stale_ms": 0.0,
            "x_cache": {},
        }
        self.per_host_reads = [0] * len(self.hosts)

    def _ack(self, value, host_index):
        with self.lock:
            self.ack_times.append(time.perf_counter())
            self.ack_values.append(value)
            self.ack_hosts.append(host_index)

    def setup(self):
        client = Client(self.hosts[0], self.token)
        status, _, record = client.call("POST", "/api/v2/opportunities", {"name": self.name, "amount": 1})
        if status != 201:
            raise RuntimeError(f"cannot create the probe: {status} {record}")
        self.probe = record["id"]
        self._ack(1.0, 0)
        for host in self.hosts:  # fill both replicas' caches
            reader = Client(host, self.token)
            for path in READ_PATHS:
                reader.call("GET", path)

    def _writer(self):
        clients = [Client(host, self.token) for host in self.hosts]
        value = 1
        while not self.stop_event.is_set():
            value += 1
            index = self.write_to[value % len(self.write_to)]
            try:
                status, _, _ = clients[index].call("PATCH", f"/api/v2/opportunities/{self.probe}", {"amount": value})
            except Exception:
                status = None
            if status == 200:
                self._ack(float(value), index)
                self.figures["writes"] += 1
            else:
                self.figures["write_errors"] += 1
            self.stop_event.wait(self.write_interval)

    def _probe_amount(self, path, body):
        records = body["recent"]["opportunities"] if "bundle" in path else body["data"]
        for record in records:
            if record["id"] == self.probe:
                return float(record["amount"])
        return None

    def _reader(self, index):
        client = Client(self.hosts[index], self.token)
        turn = 0
        while not self.stop_event.is_set():
            path = READ_PATHS[turn % len(READ_PATHS)]
            turn += 1
            started = time.perf_counter()
            try:
                status, x_cache, body = client.call("GET", path)
            except Exception:
                self.figures["read_errors"] += 1
                continue
            with self.lock:
                self.figures["reads"] += 1
                self.per_host_reads[index] += 1
                key = x_cache or "none"
                self.figures["x_cache"][key] = self.figures["x_cache"].get(key, 0) + 1
                if status != 200:
                    self.figures["read_errors"] += 1
                    continue
                amount = self._probe_amount(path, body)
                if amount is None:
                    self.figures["missing"] += 1
                    continue
                # acknowledgements before the read started, newest last (a single writer, so
                # acknowledged values only grow)
                newest_any = newest_old = newest_same = None
                for at, value, host in zip(reversed(self.ack_times), reversed(self.ack_values),
                                           reversed(self.ack_hosts)):
                    if at > started:
                        continue
                    if newest_any is None:
                        newest_any = value
                    if newest_same is None and host == index:
                        newest_same = value
                    if at <= started - WINDOW:
                        newest_old = (value, at)
                        break
                if newest_old and amount < newest_old[0]:
                    self.figures["stale"] += 1
                    # how long ago the first write newer than what was seen was acknowledged
                    first_newer = next(at for at, value in zip(self.ack_times, self.ack_values) if value > amount)
                    self.figures["worst_stale_ms"] = max(self.figures["worst_stale_ms"],
                                                         (started - first_newer) * 1000)
                elif newest_same is not None and amount < newest_same:
                    self.figures["ryw_violations"] += 1
                elif newest_any is not None and amount < newest_any:
                    self.figures["within_window"] += 1
            time.sleep(0.001)

    def start(self):
        self.threads = [threading.Thread(target=self._writer, daemon=True)]
        self.threads += [threading.Thread(target=self._reader, args=(i,), daemon=True)
                         for i in range(len(self.hosts))]
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)
        figures = dict(self.figures)
        figures["reads_per_replica"] = list(self.per_host_reads)
        figures["window_ms"] = WINDOW * 1000
        return figures

    def cleanup(self):
        if self.probe:
            try:
                Client(self.hosts[0], self.token).call("DELETE", f"/api/v2/opportunities/{self.probe}")
            except Exception:  # the caller's cleanup removes leftovers by name
                pass


def main():
    args = [arg for arg in sys.argv[1:] if arg != "--write-to-a-only"]
    host_a, host_b, token = args[:3]
    seconds = float(args[3]) if len(args) > 3 else 10
    write_to = [0] if "--write-to-a-only" in sys.argv else None
    checker = StaleChecker([host_a, host_b], token, write_to=write_to)
    checker.setup()
    try:
        checker.start()
        time.sleep(seconds)
        print(json.dumps(checker.stop(), indent=2))
    finally:
        checker.cleanup()


if __name__ == "__main__":
    main()
