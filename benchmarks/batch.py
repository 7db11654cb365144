"""`toolkit batch` throughput: local mode against Ray Data with 1 and 2 workers (issue 16, part 2).

    python benchmarks/batch.py [--texts 2000] [--serial-check 300] [--chunk-size 500]

The first ``--texts`` CMeEE dev texts (../shared/corpora, written to a temporary folder, never to
the repository) go through ``ner-medical`` on ONNX Runtime int8:

* ``local``: :func:`toolkit.batch.run.run_batch`, one process, 1 thread;
* ``ray-1``, ``ray-2``: :func:`toolkit.batch.ray_data.run_batch_ray` on a local Ray with 1 and 2 actors,
  1 thread each; Ray's start-up (``ray.init``) is timed apart from the run (which includes loading
  the model in each actor).

Checks: the outputs of the three runs are byte-identical, and the first ``--serial-check`` rows
equal ``load(...)(text)`` called once per text. Writes ``benchmarks/results/batch.{json,md}``.
The machine's CPU is shared with other jobs, so the timings are noisy.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_info, write_results  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ner" / "cmeee" / "dev.txt"
MODEL = "ner-medical"
OPTIONS = {"runtime": "onnx", "quantize": "int8"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--serial-check", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=500)
    args = parser.parse_args()

    from toolkit import load
    from toolkit.batch.run import read_output, run_batch
    from toolkit.batch.ray_data import run_batch_ray
    from toolkit.cli_io import jsonable

    with open(CORPUS, encoding="utf-8") as f:
        texts = [line.split("|||", 1)[0].strip() for _, line in zip(range(args.texts), f)]
    chars = sum(len(t) for t in texts)
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cmeee_dev.txt"
        src.write_text("\n".join(texts) + "\n", encoding="utf-8")
        runs = [("local", None), ("ray-1", 1), ("ray-2", 2)]
        for label, workers in runs:
            out_dir = Path(tmp) / label
            t0 = time.perf_counter()
            timings: dict[str, float] = {}
            if workers is None:
                [out] = run_batch(MODEL, [str(src)], out_dir, chunk_size=args.chunk_size, threads=1, **OPTIONS)
            else:
                [out] = run_batch_ray(MODEL, [str(src)], out_dir, chunk_size=args.chunk_size, workers=workers, threads=1,
                                      timings=timings, **OPTIONS)
            wall = time.perf_counter() - t0
            run_s = timings.get("run_s", wall)
            outputs[label] = out.read_bytes()
            rows.append({"mode": label, "workers": workers or 1, "threads_per_worker": 1, "wall_s": round(wall, 2),
                         "ray_start_s": round(timings["ray_start_s"], 2) if timings else None, "run_s": round(run_s, 2),
                         "chars_per_s": round(chars / run_s), "chars_per_s_wall": round(chars / wall)})
            print(json.dumps(rows[-1]), flush=True)
            if label == "local":
                produced = [r["result"] for r in read_output(out)[: args.serial_check]]
        pipe = load(MODEL, threads=1, **OPTIONS)
        reference = [json.loads(json.dumps(jsonable(pipe(t)), ensure_ascii=False)) for t in texts[: args.serial_check]]
    identical = {label: outputs[label] == outputs["local"] for label in outputs}
    serial_diff = sum(a != b for a, b in zip(produced, reference))
    data = {"run": run_info(sys.argv, threads=1), "model": MODEL, "options": OPTIONS, "texts": len(texts), "chars": chars,
            "chunk_size": args.chunk_size, "rows": rows, "identical_to_local": identical,
            "serial_check": {"texts": len(reference), "differing": serial_diff}}
    head = "| mode | workers x threads | wall s | Ray start s | run s | chars/s (run) | chars/s (wall) |\n|---|---|---|---|---|---|---|\n"
    table = "".join(f"| {r['mode']} | {r['workers']} x 1 | {r['wall_s']} | {r['ray_start_s'] if r['ray_start_s'] is not None else '-'} | "
                    f"{r['run_s']} | {r['chars_per_s']:,} | {r['chars_per_s_wall']:,} |\n" for r in rows)
    md = (f"# `toolkit batch`: local vs Ray Data\n\n{len(texts):,} CMeEE dev texts ({chars:,} characters), `{MODEL}` on ONNX Runtime "
          f"int8, shards of {args.chunk_size} lines. `run s` includes loading the model (in each Ray actor); `Ray start s` is "
          f"`ray.init` of a local Ray.\n\n{head}{table}\n"
          f"Outputs byte-identical to local mode: {', '.join(f'{k}: {v}' for k, v in identical.items())}. "
          f"First {len(reference)} rows against `load(...)(text)` called once per text: {serial_diff} differ.\n\n"
          "The CPU is shared with other jobs (2 cores here), so the timings are noisy; 2 workers can only beat 1 when a "
          "second core is free.\n")
    write_results("batch", data, md)
    print(md)


if __name__ == "__main__":
    main()
