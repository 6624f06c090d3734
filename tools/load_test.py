#!/usr/bin/env python3
"""Load test of `r1lite serve`: N clients at once, mixed lengths, some streams cancelled early.

    python tools/load_test.py MODEL --clients 4 --requests 8 [--max-batch 8] [--cancel 0.25]
    python tools/load_test.py MODEL --clients 1 --requests 8      # the single-client baseline

Starts the server in this process on a free loopback port (bounded: loopback only, a fixed
number of requests), runs `--clients` threads that each send `--requests` streamed chat requests
one after another (greedy, max_tokens drawn from --tokens), closes a fraction `--cancel` of the
streams after a few chunks, then checks every finished request against the same request served
alone (no request lost or mixed up) and prints throughput and latency percentiles.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import statistics
import sys
import threading
import time

import repo_path  # noqa: E402,F401  (r1lite from this checkout when built in place)

import r1lite  # noqa: E402
from r1lite.server import Server  # noqa: E402


def start_server(model, max_batch: int):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = Server(model, "model", max_batch=max_batch)
    server = uvicorn.Server(uvicorn.Config(srv.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return port, server, thread, srv


def stream_chat(port: int, body: dict, cancel_after: int | None):
    """((reasoning, answer), completion tokens or None, seconds to first chunk, total seconds,
    cancelled)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
    parts, first, chunks, usage = {"reasoning_content": [], "content": []}, None, 0, None
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        msg = json.loads(data)
        if msg.get("usage"):
            usage = msg["usage"]["completion_tokens"]
        for c in msg["choices"]:
            for field, text in c["delta"].items():
                if field in parts and text:
                    first = first or time.perf_counter() - t0
                    parts[field].append(text)
                    chunks += 1
        if cancel_after is not None and chunks >= cancel_after:
            conn.close()
            return None, None, first, time.perf_counter() - t0, True
    conn.close()
    text = ("".join(parts["reasoning_content"]).strip(), "".join(parts["content"]).strip())
    return text, usage, first, time.perf_counter() - t0, False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=4, help="per client")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, nargs=2, default=[32, 96], help="max_tokens range")
    ap.add_argument("--cancel", type=float, default=0.0, help="fraction of streams closed early")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--no-verify", action="store_true", help="skip the served-alone comparison")
    args = ap.parse_args(argv)

    rng = random.Random(0)
    jobs = []  # per client: list of (body, cancel_after)
    for c in range(args.clients):
        mine = []
        for i in range(args.requests):
            body = dict(model="model", temperature=0, stream=True,
                        stream_options={"include_usage": True},
                        max_tokens=rng.randint(*args.tokens),
                        messages=[{"role": "user", "content": f"Client {c}, question {i}: "
                                   f"name {rng.randint(2, 9)} animals that start with "
                                   f"{'ABCDEFGHIJ'[rng.randint(0, 9)]}."}])
            mine.append((body, rng.randint(2, 8) if rng.random() < args.cancel else None))
        jobs.append(mine)

    model = r1lite.load(args.model, threads=args.threads, context=args.context)
    port, server, thread, srv = start_server(model, args.max_batch)
    results = []
    lock = threading.Lock()

    def client(mine):
        for body, cancel_after in mine:
            out = stream_chat(port, body, cancel_after)
            with lock:
                results.append((body, *out))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(mine,)) for mine in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.should_exit = True
    thread.join()

    done = [r for r in results if not r[5]]
    tokens = sum(r[2] for r in done)
    lost = args.clients * args.requests - len(results)
    print(f"{args.clients} clients x {args.requests} requests (max_batch {args.max_batch}), "
          f"{len(results) - len(done)} cancelled, {lost} lost; widest batch {srv.engine.widest_batch}")
    print(f"completion tokens {tokens} in {wall:.1f} s: {tokens / wall:.2f} tok/s aggregate")
    firsts = sorted(r[3] for r in results if r[3] is not None)
    totals = sorted(r[4] for r in done)

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
    # decode rate of one stream: tokens after the first over the time after the first
    rates = sorted((r[2] - 1) / (r[4] - r[3]) for r in done if r[2] > 1 and r[4] > r[3])
    together = min(args.clients, args.max_batch)
    print(f"decode per stream: p50 {pct(rates, .5):.2f} tok/s; x {together} streams at once = "
          f"{together * pct(rates, .5):.2f} tok/s aggregate decode")
    print(f"time to first token: p50 {pct(firsts, .5):.2f} s, p90 {pct(firsts, .9):.2f} s; "
          f"request time: p50 {pct(totals, .5):.2f} s, p90 {pct(totals, .9):.2f} s, "
          f"mean {statistics.fmean(totals) if totals else float('nan'):.2f} s")

    if not args.no_verify:  # every finished request equals the same request served alone
        mixed = 0
        for body, text, *_ in done:
            g = model.chat(body["messages"], max_new_tokens=body["max_tokens"], temperature=0)
            mixed += text != (g.reasoning, g.answer)
        print(f"verified {len(done)} finished requests against single runs: {mixed} differ")
        return 1 if mixed or lost else 0
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
