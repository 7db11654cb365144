"""What the CPU can do fast: its model name and the instruction-set flags that decide whether bf16
and int8 pay off (``/proc/cpuinfo``). Torch-free; used by the training dtype choice
(:mod:`toolkit.train.precision`) and the inference runtime choice (:mod:`toolkit.runtime.auto`), whose
measurement caches are kept per CPU (:meth:`CpuInfo.cache_name`).

Example:
    >>> info = cpu_info()
    >>> isinstance(info.bf16_native, bool)
    True
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path

# flags that tell bf16 and wide-vector support apart (x86 names from /proc/cpuinfo; "bf16" on Arm)
FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512f", "avx512_vnni", "avx2", "fma", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # native bf16 arithmetic; without them bf16 is emulated


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and the flags of :data:`FLAGS` it has (``known``: a flags line was read)."""

    model: str
    flags: frozenset[str]
    known: bool = True

    @property
    def bf16_native(self) -> bool:
        return bool(self.flags & set(BF16_FLAGS))

    def describe(self) -> str:
        """``"AMD EPYC (avx2, avx512_bf16, avx512f, avx512_vnni, fma; no AMX)"``."""
        flags = ", ".join(sorted(self.flags)) if self.known else "flags unknown"
        return f"{self.model} ({flags}{'' if 'amx_bf16' in self.flags or not self.known else '; no AMX'})"

    def cache_name(self, *versions: str) -> str:
        """``<model slug>-<digest>.json``: one measurement-cache file per CPU model, flags and
        ``versions`` (of the libraries whose speed was measured).

        >>> CpuInfo("Intel(R) Xeon(R) 8480+", frozenset({"avx2"})).cache_name("2.5.1").startswith("Intel-R-Xeon-R-8480-")
        True
        """
        digest = hashlib.sha256(json.dumps([self.model, sorted(self.flags), *versions]).encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.model).strip("-")[:60] or "cpu"
        return f"{slug}-{digest}.json"


def cpu_info(path: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """Model name and relevant flags of the first processor in ``path`` (Linux); elsewhere the
    platform's processor name and no flags (``known=False``).

    >>> info = cpu_info()
    >>> isinstance(info.model, str) and info.flags <= set(FLAGS)
    True
    """
    model, flags, known = "", frozenset(), False
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not known:  # x86: flags; Arm: Features
            flags, known = frozenset(value.split()) & set(FLAGS), True
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown", flags, known)


__all__ = ["BF16_FLAGS", "FLAGS", "CpuInfo", "cpu_info"]
