#!/usr/bin/env python3
"""A soak: the gateway under a fixed mix for a long time, sampled, and
judged on whether anything grows.

The mix, at --rate requests a second from --workers threads: plain and
streamed chat, translated both ways (an OpenAI client on a model behind
Anthropic's API and the reverse), requests refused by auth and by a limit,
and clients that leave in the middle of a stream. The config is reloaded
every --reload-every seconds (a limit changes, so the reload is real) and
one of the two backends of the OpenAI pool flaps between healthy and
failing every --flap-every seconds. Limits are hybrid on a Redis this
script starts; the access log is on (written to /dev/null).

Every --sample-every seconds it records the gateway's RSS and open file
descriptors, the requests done by kind, unexpected answers, and the p50 and
p99 latency of plain chats, into soak.csv in --out; soak.json holds the
verdict. The criteria, over the last two thirds of the run (the first third
is warm-up, or --warmup seconds): RSS grows less than --max-rss-growth (2%), open fds end within
--max-fd-drift (8) of where they started and never climb past twice that
above it, and (unless --no-latency) the p99 of the last sixth is within 20%
of the first sixth's after warm-up. --plot draws soak.png (needs matplotlib).

Usage: soak.py --gateway BIN --mock BIN [--duration SECONDS] [--out DIR] ...
Exits 0 when every criterion holds, 1 when one does not, 2 on a setup error.
"""

import argparse
import csv
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

KEY = "sk-soak-key-000000000000"
LIMITED_KEY = "sk-soak-limited-0000000000"
SMALL_LIMIT = (5, 6)  # alternates on every reload


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never opened")


def start_mock(binary, name):
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--name", name, "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        raise SystemExit(f"mock {name}: {line!r}")
    return proc, line.removeprefix("listening on ")


def config(dirname, proxy, admin, redis_port, mock_a, mock_b, small_limit):
    return f"""server:
  threads: 2
  upgrade_sock: {dirname}/upgrade.sock
  pid_file: {dirname}/gateway.pid
listen:
  proxy: ["127.0.0.1:{proxy}"]
  admin: "127.0.0.1:{admin}"
auth:
  api_keys:
    - {{id: soak, key: {KEY}}}
    - {{id: limited, key: {LIMITED_KEY}, limits: [small]}}
limits:
  mode: hybrid
  redis: {{url: "redis://127.0.0.1:{redis_port}", timeout: 200ms}}
  rules:
    - {{name: per-key, key: [api_key], counts: requests, limit: 100000, window: minute}}
    - {{name: tokens, key: [api_key], counts: total_tokens, limit: 1000000000, window: hour}}
    - {{name: small, key: [api_key], counts: requests, limit: {small_limit}, window: second}}
  global_rules: [per-key, tokens]
access_log: {{enabled: true, path: /dev/null}}
upstreams:
  openai-pool:
    backends:
      - {{base_url: "http://{mock_a}", provider: openai, api_key: sk-provider-a}}
      - {{base_url: "http://{mock_b}", provider: openai, api_key: sk-provider-b}}
    health_check: {{path: /health, interval: 2s}}
  anthropic-pool:
    backends:
      - {{base_url: "http://{mock_a}", provider: anthropic, api_key: sk-provider-a}}
routes:
  - name: gpt
    paths: [/v1/chat/completions]
    models: [mock-gpt]
    upstream: openai-pool
    retry: {{attempts: 2, on: [connect_error, timeout, 5xx]}}
  - {{name: claude-via-chat, paths: [/v1/chat/completions], models: [mock-claude], upstream: anthropic-pool}}
  - {{name: claude, paths: [/v1/messages], models: [mock-claude], upstream: anthropic-pool}}
  - {{name: gpt-via-messages, paths: [/v1/messages], models: [mock-gpt], upstream: openai-pool}}
"""


def chat_body(model, stream, anthropic=False):
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]}
    if anthropic:
        body["max_tokens"] = 64
    return json.dumps(body).encode()


# (kind, weight, expected statuses)
MIX = [
    ("chat", 30, {200}),
    ("stream", 20, {200}),
    ("openai_to_anthropic", 10, {200}),
    ("anthropic_to_openai", 10, {200}),
    ("auth_refused", 10, {401}),
    ("limited", 10, {200, 429}),
    ("leaves_mid_stream", 10, {200}),
]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.done = {kind: 0 for kind, _, _ in MIX}
        self.unexpected = []
        self.latencies = []  # plain chats of the current window, seconds

    def record(self, kind, status, latency, expected):
        with self.lock:
            self.done[kind] += 1
            if status not in expected:
                self.unexpected.append(f"{kind}:{status}")
            if kind == "chat" and status == 200:
                self.latencies.append(latency)

    def take_window(self):
        with self.lock:
            latencies, self.latencies = self.latencies, []
            unexpected, self.unexpected = self.unexpected, []
            return dict(self.done), latencies, unexpected


def one_request(port, kind):
    """Sends one request of `kind`; returns its status (0: a transport error)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    path, body = "/v1/chat/completions", chat_body("mock-gpt", False)
    if kind == "stream":
        body = chat_body("mock-gpt", True)
        headers["x-mock-chunks"] = "10"
        headers["x-mock-chunk-delay-ms"] = "20"
    elif kind == "openai_to_anthropic":
        body = chat_body("mock-claude", random.random() < 0.5)
    elif kind == "anthropic_to_openai":
        path = "/v1/messages"
        body = chat_body("mock-gpt", random.random() < 0.5, anthropic=True)
        headers = {"content-type": "application/json", "x-api-key": KEY, "anthropic-version": "2023-06-01"}
    elif kind == "auth_refused":
        headers["authorization"] = "Bearer sk-not-a-key"
    elif kind == "limited":
        headers["authorization"] = f"Bearer {LIMITED_KEY}"
    elif kind == "leaves_mid_stream":
        body = chat_body("mock-gpt", True)
        headers["x-mock-chunks"] = "50"
        headers["x-mock-chunk-delay-ms"] = "50"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        if kind == "leaves_mid_stream":
            resp.read(200)  # the first events, then gone
            conn.sock.close()
            return resp.status
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def worker(port, rate_per_worker, stop, stats):
    kinds = [kind for kind, _, _ in MIX]
    weights = [w for _, w, _ in MIX]
    expected = {kind: e for kind, _, e in MIX}
    interval = 1.0 / rate_per_worker
    next_at = time.monotonic()
    while not stop.is_set():
        kind = random.choices(kinds, weights)[0]
        started = time.monotonic()
        status = one_request(port, kind)
        stats.record(kind, status, time.monotonic() - started, expected[kind])
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            stop.wait(pause)
        else:
            next_at = time.monotonic()  # behind: do not burst to catch up


def proc_reading(pid):
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb, fds


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def judge(rows, args):
    """The verdict over the samples after the warm-up."""
    warm_up = args.warmup if args.warmup is not None else args.duration / 3
    warm = [r for r in rows if r["elapsed_s"] >= warm_up]
    if len(warm) < 3:
        return {"ok": False, "why": ["too few samples after warm-up"]}
    why = []
    rss_start, rss_end = warm[0]["rss_kb"], warm[-1]["rss_kb"]
    # The end is the median of the last three samples, so one allocation
    # burst at the last moment is not growth.
    rss_end = sorted(r["rss_kb"] for r in warm[-3:])[1]
    growth = (rss_end - rss_start) / rss_start
    if growth >= args.max_rss_growth:
        why.append(f"RSS grew {growth:.2%} ({rss_start} -> {rss_end} kB)")
    fd_start = warm[0]["fds"]
    fd_end = sorted(r["fds"] for r in warm[-3:])[1]
    fd_max = max(r["fds"] for r in warm)
    if abs(fd_end - fd_start) > args.max_fd_drift or fd_max > fd_start + 2 * args.max_fd_drift:
        why.append(f"open fds moved: {fd_start} -> {fd_end} (max {fd_max})")
    sixth = max(1, len(rows) // 6)
    first = [r["p99_ms"] for r in warm[:sixth] if r["p99_ms"] is not None]
    last = [r["p99_ms"] for r in rows[-sixth:] if r["p99_ms"] is not None]
    p99_first = sorted(first)[len(first) // 2] if first else None
    p99_last = sorted(last)[len(last) // 2] if last else None
    if not args.no_latency and p99_first and p99_last and p99_last > p99_first * 1.2:
        why.append(f"p99 rose from {p99_first:.1f} ms to {p99_last:.1f} ms")
    unexpected = sum(r["unexpected"] for r in rows)
    total = sum(r["requests"] for r in rows)
    # A flapping backend may fail a request whose retry also met it failing.
    if unexpected > max(10, total // 1000):
        why.append(f"{unexpected} unexpected answers of {total}")
    return {
        "ok": not why, "why": why, "requests": total, "unexpected": unexpected,
        "rss_kb": [rss_start, rss_end], "rss_growth": round(growth, 5),
        "fds": [fd_start, fd_end, fd_max], "p99_ms": [p99_first, p99_last],
    }


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    minutes = [r["elapsed_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    axes[0].plot(minutes, [r["rss_kb"] / 1024 for r in rows])
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].plot(minutes, [r["fds"] for r in rows])
    axes[1].set_ylabel("open fds")
    axes[2].plot(minutes, [r["p99_ms"] for r in rows], label="p99")
    axes[2].plot(minutes, [r["p50_ms"] for r in rows], label="p50")
    axes[2].set_ylabel("plain chat (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--mock", required=True)
    parser.add_argument("--duration", type=float, default=3600)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--reload-every", type=float, default=300)
    parser.add_argument("--flap-every", type=float, default=30)
    parser.add_argument("--sample-every", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds not judged at the start (default: a third of the run)")
    parser.add_argument("--max-rss-growth", type=float, default=0.02)
    parser.add_argument("--max-fd-drift", type=int, default=8)
    parser.add_argument("--no-latency", action="store_true", help="judge RSS and fds only")
    parser.add_argument("--out", default=".")
    parser.add_argument("--plot", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="soak-")
    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(redis_port)
        mock_a, addr_a = start_mock(args.mock, "a")
        mock_b, addr_b = start_mock(args.mock, "b")
        procs += [mock_a, mock_b]
        proxy, admin = free_port(), free_port()
        config_path = os.path.join(work, "soak.yaml")
        small = 0

        def write_config():
            with open(config_path, "w") as f:
                f.write(config(work, proxy, admin, redis_port, addr_a, addr_b, SMALL_LIMIT[small % 2]))

        write_config()
        log = open(os.path.join(args.out, "gateway.log"), "w")
        gateway = subprocess.Popen([args.gateway, "-c", config_path], stdout=log, stderr=log,
                                   env={**os.environ, "RUST_LOG": "warn"})
        procs.append(gateway)
        wait_port(proxy)
        wait_port(admin)

        stop = threading.Event()
        stats = Stats()
        threads = [threading.Thread(target=worker, args=(proxy, args.rate / args.workers, stop, stats), daemon=True)
                   for _ in range(args.workers)]
        for t in threads:
            t.start()

        def flap(failing):
            conn = http.client.HTTPConnection(*addr_b.split(":"), timeout=5)
            conn.request("PUT", f"/mock/fail/{503 if failing else 0}")
            conn.getresponse().read()
            conn.request("PUT", f"/mock/health/{503 if failing else 200}")
            conn.getresponse().read()
            conn.close()

        rows = []
        started = time.monotonic()
        next_sample = next_reload = next_flap = 0.0
        next_sample, next_reload, next_flap = args.sample_every, args.reload_every, args.flap_every
        failing = False
        reloads = 0
        previous_done = {kind: 0 for kind, _, _ in MIX}
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= args.duration:
                break
            if gateway.poll() is not None:
                raise SystemExit(f"the gateway exited: {gateway.returncode}")
            if elapsed >= next_flap:
                failing = not failing
                flap(failing)
                next_flap += args.flap_every
            if elapsed >= next_reload:
                small += 1
                write_config()
                gateway.send_signal(signal.SIGHUP)
                reloads += 1
                next_reload += args.reload_every
            if elapsed >= next_sample:
                rss, fds = proc_reading(gateway.pid)
                done, latencies, unexpected = stats.take_window()
                requests = sum(done.values()) - sum(previous_done.values())
                previous_done = done
                p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                row = {
                    "elapsed_s": round(elapsed, 1), "rss_kb": rss, "fds": fds, "requests": requests,
                    "rate": round(requests / args.sample_every, 1),
                    "p50_ms": None if p50 is None else round(p50 * 1000, 2),
                    "p99_ms": None if p99 is None else round(p99 * 1000, 2),
                    "unexpected": len(unexpected), "reloads": reloads, "flapping_backend_failing": failing,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                if unexpected:
                    print("  unexpected:", sorted(set(unexpected))[:10], flush=True)
                next_sample += args.sample_every
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(timeout=40)
        with open(os.path.join(args.out, "soak.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(rows)
        verdict = judge(rows, args)
        verdict.update({"duration_s": args.duration, "rate": args.rate, "reloads": reloads})
        with open(os.path.join(args.out, "soak.json"), "w") as f:
            json.dump(verdict, f, indent=2)
        if args.plot:
            plot(rows, os.path.join(args.out, "soak.png"))
        print(json.dumps(verdict), flush=True)
        return 0 if verdict["ok"] else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
