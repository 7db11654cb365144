"""`toolkit serve` on loopback: throughput and latency with and without dynamic batching, RSS over
many requests, and served results == the library's.

Starts `toolkit serve MODEL --runtime onnx --quantize int8` in a subprocess on a free loopback port,
sends one CMeEE dev text per request from a bounded httpx async load generator at each concurrency,
once with batching (`--max-batch 64 --max-wait-ms 5`) and once without (`--max-batch 1`: one
request = one model call). The load generator runs on the same (shared, noisy) CPU as the server.

    python benchmarks/serve.py                       # ner-medical int8, c = 1, 8, 32, 20,000 RSS requests
    python benchmarks/serve.py --requests 100 --rss-requests 1000   # a quick look

Writes results/serve.{json,md,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, run_info, write_results  # noqa: E402

CMEEE_DEV = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ner" / "cmeee" / "dev.txt"
FALLBACK = ["患者三天前出现发热、咳嗽。", "既往有2型糖尿病史，规律服用二甲双胍。", "查体：双肺呼吸音粗，未闻及干湿啰音。", "胸部CT示右下肺炎症。"]


def texts(limit: int) -> list[str]:
    if CMEEE_DEV.is_file():
        lines = CMEEE_DEV.read_text(encoding="utf-8").splitlines()
        return [line.split("|||")[0] for line in lines if line.strip()][:limit]
    return FALLBACK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ServerProcess:
    def __init__(self, model: str, threads: int, max_batch: int, max_wait_ms: float) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "toolkit.cli", "serve", model, "--runtime", "onnx", "--quantize", "int8", "--threads", str(threads),
               "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--max-queue", "100000"]
        self.command = " ".join(cmd[2:])
        self.proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1])
        for _ in range(1200):  # up to 120 s
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with code {self.proc.returncode}")
            time.sleep(0.1)
        self.stop()
        raise SystemExit("the server was not ready within 120 s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def model_calls(base: str) -> tuple[float, float]:
    """``(texts, calls)`` the server's text batcher has run so far (its /metrics)."""
    found = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        for key in found:
            if line.startswith(f"toolkit_batch_texts_{key}{{") and 'input="text"' in line:
                found[key] += float(line.split()[-1])
    return found["sum"], found["count"]


async def load_run(url: str, pool: list[str], n: int, concurrency: int, on_progress=None) -> dict:
    """``n`` single-text requests by ``concurrency`` workers; latencies in ms."""
    latencies: list[float] = []
    results: dict[int, object] = {}
    counter = iter(range(n))
    errors = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            t0 = time.perf_counter()
            r = await client.post(url, json={"text": pool[i % len(pool)]})
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                errors += 1
            elif i < len(pool):
                results[i] = r.json()["result"]
            if on_progress is not None:
                on_progress(i)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies)
    return {
        "concurrency": concurrency, "requests": n, "errors": errors, "seconds": round(wall, 2), "requests_per_s": round(n / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1), "_results": results,
    }


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for mode, rows in data["load"].items():
        cs = [r["concurrency"] for r in rows]
        axes[0].plot(cs, [r["requests_per_s"] for r in rows], marker="o", label=mode)
        axes[1].plot(cs, [r["p95_ms"] for r in rows], marker="o", label=mode)
    axes[0].set(xscale="log", xlabel="concurrent clients", ylabel="requests/s", title="throughput")
    axes[1].set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="p95 latency (ms)", title="p95 latency")
    for ax in axes[:2]:
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.legend()
    rss = data["rss"]["samples"]
    axes[2].plot([s[0] for s in rss], [s[1] for s in rss], marker=".")
    axes[2].set(xlabel="requests answered", ylabel="server RSS (MB)", title=f"server RSS ({data['rss']['mode'].split(' (')[0]}, {data['rss']['concurrency']} clients)")
    axes[2].set_ylim(0, max(s[1] for s in rss) * 1.2)
    fig.suptitle(f"toolkit serve {data['model']} (onnx int8), loopback, shared 2-core CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ner-medical")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads of the server")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=300, help="requests per run (one run: one mode at one concurrency)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per mode and concurrency, interleaved; the table shows the median")
    ap.add_argument("--rss-requests", type=int, default=20_000)
    ap.add_argument("--check", type=int, default=300, help="texts whose served results are compared with load(...) directly")
    args = ap.parse_args()
    pool = texts(max(args.check, 1000))
    levels = [int(c) for c in args.concurrency.split(",")]
    modes = {"greedy (max-batch 64, wait 0 ms: default)": (64, 0.0), "waiting (max-batch 64, wait 5 ms)": (64, 5.0), "unbatched (max-batch 1)": (1, 0.0)}
    data: dict = {"run": run_info(sys.argv, threads=args.threads), "model": args.model, "load": {}, "servers": {}}

    from toolkit import load
    from toolkit.cli_io import jsonable

    direct = jsonable(load(args.model, runtime="onnx", quantize="int8", threads=args.threads, export=True)(pool[: args.check]))
    servers: dict[str, ServerProcess] = {}
    try:
        for mode, (max_batch, wait) in modes.items():  # all up at once, idle ones cost no CPU
            servers[mode] = ServerProcess(args.model, args.threads, max_batch, wait)
            data["servers"][mode] = servers[mode].command
        urls = {mode: f"{srv.url}/v1/models/{args.model}" for mode, srv in servers.items()}
        for url in urls.values():
            asyncio.run(load_run(url, pool, 32, 8))  # warm-up
        runs: dict[tuple[str, int], list[dict]] = {}
        for c in levels:
            for _ in range(args.rounds):  # modes interleaved, so drift in the other jobs' load hits all alike
                for mode, url in urls.items():
                    texts0, calls0 = model_calls(servers[mode].url)
                    row = asyncio.run(load_run(url, pool[: args.check], args.requests, c))
                    texts1, calls1 = model_calls(servers[mode].url)
                    row["model_calls"] = int(calls1 - calls0)
                    row["texts_per_call"] = round((texts1 - texts0) / max(calls1 - calls0, 1), 2)
                    served = row.pop("_results")
                    row["identical_to_library"] = all(served[i] == direct[i] for i in served)
                    row["compared"] = len(served)
                    runs.setdefault((mode, c), []).append(row)
                    print(mode, row, flush=True)
        for (mode, c), rows in runs.items():
            median = sorted(rows, key=lambda r: r["requests_per_s"])[len(rows) // 2]
            data["load"].setdefault(mode, []).append({**median, "rounds": len(rows), "best_requests_per_s": max(r["requests_per_s"] for r in rows),
                                                      "identical_to_library": all(r["identical_to_library"] for r in rows)})
        if args.rss_requests:
            mode = next(iter(modes))
            pid = servers[mode].proc.pid
            samples = [(0, round(rss_mb(pid), 1))]
            step = max(args.rss_requests // 20, 1)

            def sample(i: int) -> None:
                if (i + 1) % step == 0:
                    samples.append((i + 1, round(rss_mb(pid), 1)))

            row = asyncio.run(load_run(urls[mode], pool, args.rss_requests, 8, sample))
            row.pop("_results")
            data["rss"] = {"mode": mode, "concurrency": 8, "requests": args.rss_requests, "errors": row["errors"],
                           "requests_per_s": row["requests_per_s"], "samples": samples,
                           "growth_mb_after_first_10pct": round(samples[-1][1] - samples[2][1], 1) if len(samples) > 2 else None}
            print("rss", data["rss"], flush=True)
    finally:
        for mode, srv in servers.items():
            srv.stop()
            data["servers"][mode] += f" (exit code {srv.proc.returncode} after SIGTERM)"

    lines = [f"# `toolkit serve` {args.model} (ONNX int8) on loopback", "",
             f"One CMeEE dev text per request (httpx async clients in one process on the same CPU as the server; "
             f"server: {args.threads} ONNX threads). The CPU has {os.cpu_count()} cores shared with other jobs: numbers are noisy.", "",
             "Each cell: the median (by req/s) of the runs, modes interleaved; 'best' is the best run's req/s. "
             "`greedy` gathers what queued while the model was busy (no waiting); `waiting` also waits up to 5 ms for company; "
             "texts/call: texts per model call (one pipeline call, in encoder passes of 8) over that run.", "",
             "| mode | clients | requests/run | runs | req/s | best req/s | p50 ms | p95 ms | p99 ms | texts/call | errors | identical to `load()` |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, rows in data["load"].items():
        for r in rows:
            lines.append(f"| {mode} | {r['concurrency']} | {r['requests']} | {r['rounds']} | {r['requests_per_s']} | {r['best_requests_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                         f"{r['texts_per_call']} | {r['errors']} | {r['identical_to_library']} ({r['compared']} texts) |")
    if "rss" in data:
        rss = data["rss"]
        lines += ["", f"RSS of the server over {rss['requests']} requests ({rss['mode']}, 8 clients, {rss['requests_per_s']} req/s, "
                  f"{rss['errors']} errors): " + ", ".join(f"{n}: {mb} MB" for n, mb in rss["samples"][:: max(len(rss['samples']) // 6, 1)])
                  + f"; last {rss['samples'][-1][1]} MB; growth after the first 10%: {rss['growth_mb_after_first_10pct']} MB.", ""]
    lines += ["Servers:", *[f"- {m}: `{c}`" for m, c in data["servers"].items()]]
    write_results("serve", data, "\n".join(lines))
    if "rss" in data:
        plot(data, RESULTS / "serve.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
