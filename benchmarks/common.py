"""What every benchmark writes beside its numbers: command, commit, date, hardware."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_info(argv: list[str]) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    import torch

    return {
        "command": "python " + " ".join(argv),
        "commit": commit + (" (uncommitted changes)" if dirty else ""),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hardware": f"{_cpu_model()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def write_results(name: str, data: dict[str, Any], markdown: str) -> None:
    """``results/NAME.json`` and ``results/NAME.md`` (the Markdown gets the run info appended)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    run = data["run"]
    tail = "\n".join(f"- {k}: `{v}`" if k == "command" else f"- {k}: {v}" for k, v in run.items())
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n\n" + tail + "\n", encoding="utf-8")
