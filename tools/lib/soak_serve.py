#!/usr/bin/env python3
"""The server half of tools/soak: a bounded load against `infer serve` on 127.0.0.1 with
random client disconnects, then a check that no request was lost.

  soak_serve.py PORT SECONDS [--concurrency N] [--seed S] [--max-requests N]

Clients send completions (streamed or not, a few tokens each); about one in five closes
its connection mid-stream. At the end: every request that was not abandoned got a whole
answer (a final [DONE] event, or a JSON body with its text), the server's counters agree
(ok = answered, cancelled >= abandoned, nothing running, no KV block held), and /health is
still ready. Prints one JSON line of counts; exit status 1 on a lost request.
"""
import argparse
import json
import random
import socket
import sys
import threading
import time
import urllib.request


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def one_request(port, rng, abandon):
    """Returns 'ok', 'abandoned' or a string saying what was lost."""
    stream = abandon or rng.random() < 0.5
    body = json.dumps({"prompt": rng.choice(["In the beginning", "And God said",
                                             "The LORD is my shepherd"]),
                       "max_tokens": rng.randint(4, 24) if not abandon else 400,
                       "temperature": 0.8, "seed": rng.randint(0, 1 << 30),
                       "stream": stream})
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    try:
        sock.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                      f"{body}").encode())
        received = b""
        while True:
            if abandon and received.count(b"data: ") >= 2:
                return "abandoned"
            part = sock.recv(65536)
            if not part:
                break
            received += part
    finally:
        sock.close()
    head, _, payload = received.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status_line = head.split(b"\r\n")[0]
        return f"status {status_line!r}"
    if stream:
        return "ok" if b"data: [DONE]" in payload else "a stream without [DONE]"
    if b"chunked" in head.lower():  # a JSON body sent in chunks: find its object
        payload = payload[payload.find(b"{"):payload.rfind(b"}") + 1]
    try:
        text = json.loads(payload)["choices"][0]["text"]
    except (ValueError, KeyError, IndexError):
        return f"an unreadable body: {payload[:80]!r}"
    return "ok" if isinstance(text, str) else "no text"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-requests", type=int, default=20000, help="a bound on the load")
    a = ap.parse_args()
    before = metrics(a.port)
    counts = {"sent": 0, "ok": 0, "abandoned": 0, "lost": 0}
    lost = []
    lock = threading.Lock()
    end = time.time() + a.seconds

    def client(k):
        rng = random.Random(a.seed * 1000 + k)
        while time.time() < end and counts["sent"] < a.max_requests:
            abandon = rng.random() < 0.2
            try:
                outcome = one_request(a.port, rng, abandon)
            except OSError as e:
                outcome = f"connection error: {e}"
            with lock:
                counts["sent"] += 1
                if outcome in ("ok", "abandoned"):
                    counts[outcome] += 1
                else:
                    counts["lost"] += 1
                    lost.append(outcome)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The server settles: abandoned sequences cancelled, nothing running, blocks freed.
    deadline = time.time() + 30
    while True:
        m = metrics(a.port)
        ok = m.get('turbine_requests_total{outcome="ok"}', 0) - before.get(
            'turbine_requests_total{outcome="ok"}', 0)
        settled = m["turbine_running_sequences"] == 0 and m["turbine_kv_blocks_used"] == 0
        if settled or time.time() > deadline:
            break
        time.sleep(0.2)
    counts["server_ok"] = int(ok)
    counts["server_cancelled"] = int(m.get('turbine_requests_total{outcome="cancelled"}', 0) -
                                     before.get('turbine_requests_total{outcome="cancelled"}', 0))
    print(json.dumps(counts))
    problems = list(lost[:5])
    if not settled:
        problems.append(f"the server did not settle: {m['turbine_running_sequences']} running, "
                        f"{m['turbine_kv_blocks_used']} KV blocks held")
    if counts["server_ok"] < counts["ok"]:
        problems.append(f"the server counted {counts['server_ok']} answered requests, the clients "
                        f"{counts['ok']}")
    if counts["sent"] == 0:
        problems.append("no request was sent")
    for p in problems:
        print(f"LOST: {p}", file=sys.stderr)
    sys.exit(1 if problems or counts["lost"] else 0)


if __name__ == "__main__":
    main()
