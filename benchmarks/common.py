"""What every benchmark writes beside its numbers: command, commit, date, hardware."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SHORT = 50  # latency texts (speed.py, memory.py) are shorter than this many characters


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


CPU_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx_vnni", "avx2", "fma")


def cpu_flags() -> str:
    """The flags of :data:`CPU_FLAGS` the CPU has (``/proc/cpuinfo``), space-separated: bf16 and int8
    speed depend on them (AMX or not), so two machines' numbers can be told apart."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return " ".join(f for f in CPU_FLAGS if f in have) or "none of " + " ".join(CPU_FLAGS)
    except OSError:
        pass
    return "unknown"


def run_info(argv: list[str], threads: int | None = None) -> dict[str, Any]:
    """Command, commit, date, hardware and library versions; ``threads``: what the run used (default: torch's)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, check=False).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    import torch

    return {
        "command": "python " + " ".join(argv),
        "commit": commit + (" (uncommitted changes)" if dirty else ""),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "hardware": f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "cpu_flags": cpu_flags(),
        "torch": torch.__version__,
        "threads": threads if threads is not None else torch.get_num_threads(),
    }


def write_results(name: str, data: dict[str, Any], markdown: str) -> None:
    """``results/NAME.json`` and ``results/NAME.md`` (the Markdown gets the run info appended)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    run = data["run"]
    tail = "\n".join(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in run.items())
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n\n" + tail + "\n", encoding="utf-8")


def ensure_exports(model: str, runtimes: list[str] | tuple[str, ...]) -> None:
    """Export ``model`` (a registered name or folder) to ONNX for the ``onnx`` / ``onnx-int8``
    runtime specs among ``runtimes``, when its folder has no up-to-date graph: ``load()`` never does
    it unasked, so a benchmark asks explicitly (this needs torch)."""
    from toolkit.registry import resolve
    from toolkit.runtime.export import ensure_export

    folder, _ = resolve(model)
    for spec in runtimes:
        if spec.startswith("onnx"):
            ensure_export(folder, "int8" if spec.endswith("int8") else None)


def rss_mb() -> float:
    """Current resident set size (``/proc/self/statm``), MB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MB: ``VmHWM`` from ``/proc/self/status``.

    Not ``ru_maxrss`` where ``/proc`` exists: Linux carries the parent's high-water mark over fork +
    exec, so a child of this (large) parent would report at least the parent's RSS.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def resolve_target(model: str, task: str | None) -> tuple[Path, str]:
    """The model folder and the tagger task to time (default: the name's task, else the first tagger)."""
    from toolkit.model.manifest import Manifest
    from toolkit.registry import resolve

    folder, selected = resolve(model)
    manifest = Manifest.read(folder)
    taggers = [t for t, s in manifest.tasks.items() if s.kind == "tagger"]
    task = task or next((t for t in selected or [] if t in taggers), None) or (taggers[0] if taggers else None)
    if task not in taggers:
        raise SystemExit(f"{model}: {task!r} is not a tagger task; its taggers: {', '.join(taggers) or '(none)'}")
    return folder, task
