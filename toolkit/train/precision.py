"""Which dtype training runs in on this machine: fp32, or bf16 autocast, chosen at run time.

The CPU under a job changes from run to run: with AMX (``amx_bf16``) PyTorch's bf16 matrix work is
about 4x fp32, with AVX-512 bf16 about 2x, and without either it is slower than fp32
(``benchmarks/results/train_speed.md``). :func:`choose_dtype` with ``"auto"`` therefore measures:
a few forward + backward steps of a small stack of linear layers as wide as the model
(:func:`measure`, well under 2 s), fp32 against bf16 autocast, and picks bf16 only when it is at
least :data:`MARGIN` times faster. The answer is cached per CPU (model name and flags, :mod:`toolkit.cpu`), torch
version, width and thread count in ``$TOOLKIT_HOME/precision/`` (:func:`toolkit.files.toolkit_home`),
so later runs skip the measurement. ``"fp32"`` and ``"bf16"`` force the choice; the environment
variable ``TOOLKIT_DTYPE=fp32|bf16`` forces what ``"auto"`` picks (e.g. in CI, for results that do
not depend on the machine). On CUDA, ``"auto"`` is bf16 where ``torch.cuda.is_bf16_supported()``.

bf16 here always means autocast: the weights, optimizer moments, losses (CRF, cross-entropy,
softmax of the heads' ``loss``) and gradients' accumulation stay fp32.

Example:
    >>> choose_dtype("fp32", "cpu")
    ('fp32', 'forced (dtype: fp32)')
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Literal

from ..cpu import BF16_FLAGS, FLAGS, CpuInfo, cpu_info  # re-exported: they lived here first
from ..model.encoder import autocast  # re-exported: training and inference share one definition

logger = logging.getLogger(__name__)

Dtype = Literal["fp32", "bf16"]
SETTINGS = ("auto", "fp32", "bf16")
MARGIN = 1.1  # bf16 must be this many times faster than fp32 to be chosen (it costs some precision)
MIN_HIDDEN = 128  # narrower models: fp32 without measuring. Measured on a Zen 5 CPU (AVX-512 bf16): a whole training
# step of a 2-layer BERT was 9.4 ms fp32 vs 10.9 ms bf16 at width 32, even at 64, 1.12x faster at 128, although the
# linear stack of measure() is already 1.13x faster in bf16 at width 32: casts and small ops dominate narrow models
ENV = "TOOLKIT_DTYPE"


def measure(hidden_size: int = 384, device: str = "cpu", rows: int = 512, layers: int = 2, budget_s: float = 0.5) -> dict[str, float]:
    """Seconds per forward + backward step, ``{"fp32": s, "bf16": s}`` (the best of a few), of
    ``layers`` residual feed-forward blocks ``hidden -> 4 hidden -> hidden`` on ``rows`` tokens.

    The two dtypes alternate after one warm-up step each, until ``budget_s`` is spent (at least two
    rounds, at most six). Uses its own random generator: the global torch and numpy random states
    are left as they were, so a run that measures trains exactly like one that does not.
    """
    import torch
    import torch.nn.functional as F

    kind = torch.device(device).type
    g = torch.Generator(device=device).manual_seed(0)
    width = 4 * hidden_size
    w_in = [(torch.randn(width, hidden_size, generator=g, device=device) * 0.02).requires_grad_() for _ in range(layers)]
    w_out = [(torch.randn(hidden_size, width, generator=g, device=device) * 0.02).requires_grad_() for _ in range(layers)]
    x = torch.randn(rows, hidden_size, generator=g, device=device)

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.enable_grad():
            with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
                h = x
                for a, b in zip(w_in, w_out):
                    h = h + F.linear(F.gelu(F.linear(h, a)), b)
            h.float().square().mean().backward()
        for w in w_in + w_out:
            w.grad = None
        if kind == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    best = {"fp32": float("inf"), "bf16": float("inf")}
    step(False), step(True)  # warm-up: kernel selection, caches
    began = time.perf_counter()
    for rounds in range(1, 7):
        for name in best:
            best[name] = min(best[name], step(name == "bf16"))
        if rounds >= 2 and time.perf_counter() - began > budget_s:
            break
    return best


def cache_file(info: CpuInfo | None = None) -> Path:
    """``$TOOLKIT_HOME/precision/<cpu>-<digest>.json``: one file per CPU model, flags and torch version."""
    import torch

    from ..files import toolkit_home

    info = info or cpu_info()
    return toolkit_home() / "precision" / info.cache_name(torch.__version__)


def choose_dtype(setting: str = "auto", device: str = "cpu", hidden_size: int = 384, cache: bool = True) -> tuple[Dtype, str]:
    """``(dtype, reason)``: ``"fp32"`` or ``"bf16"`` (autocast) for training on ``device``, and why.

    ``setting`` ``"fp32"``/``"bf16"`` is returned as it is; ``"auto"`` follows ``$TOOLKIT_DTYPE``
    when set, else on CUDA ``torch.cuda.is_bf16_supported()``, else on CPU: fp32 without native bf16
    instructions (``amx_bf16``, ``avx512_bf16``, Arm ``bf16``) or below :data:`MIN_HIDDEN` wide,
    otherwise the cached or newly :func:`measure`-d faster one (bf16 only when :data:`MARGIN` times
    faster). The choice and reason are logged at INFO.

    Example:
        >>> choose_dtype("bf16", "cpu")[0]
        'bf16'
    """
    if setting not in SETTINGS:
        raise ValueError(f"dtype must be one of {', '.join(SETTINGS)}, got {setting!r}")
    dtype, reason = _choose(setting, device, hidden_size, cache)
    logger.info("training dtype %s: %s", dtype, reason)
    return dtype, reason


def _choose(setting: str, device: str, hidden_size: int, cache: bool) -> tuple[Dtype, str]:
    if setting != "auto":
        return setting, f"forced (dtype: {setting})"  # type: ignore[return-value]
    env = os.environ.get(ENV, "").strip().lower()
    if env:
        if env not in ("fp32", "bf16"):
            raise ValueError(f"${ENV} must be fp32 or bf16, got {env!r}")
        return env, f"${ENV}={env}"  # type: ignore[return-value]
    import torch

    from ..files import cache_entry, cached_entry

    if torch.device(device).type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ("bf16", "CUDA device supports bf16") if ok else ("fp32", "CUDA device without bf16 support")
    if torch.device(device).type != "cpu":
        return "fp32", f"device {device}: no measurement, fp32"
    info = cpu_info()
    if info.known and not info.bf16_native:
        return "fp32", f"{info.describe()}: no native bf16 instructions, bf16 would be emulated"
    if hidden_size < MIN_HIDDEN:
        return "fp32", f"model width {hidden_size} < {MIN_HIDDEN}: bf16 casts cost more than they save"
    key = f"hidden{hidden_size}-threads{torch.get_num_threads()}"
    path = cache_file(info)
    if cache:
        entry = cached_entry(path, key)
        if entry and entry.get("choice") in ("fp32", "bf16"):
            return entry["choice"], f"cached measurement {path} ({_speeds(entry)})"
    seconds = measure(hidden_size, device)
    choice: Dtype = "bf16" if seconds["fp32"] >= MARGIN * seconds["bf16"] else "fp32"
    entry = {"choice": choice, "fp32_ms": round(1000 * seconds["fp32"], 3), "bf16_ms": round(1000 * seconds["bf16"], 3),
             "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if cache:
        cache_entry(path, key, entry, {"cpu": info.model, "flags": sorted(info.flags), "torch": torch.__version__}, "the dtype measurement")
    return choice, f"measured on {info.describe()}: {_speeds(entry)}"


def _speeds(entry: dict) -> str:
    ratio = entry["fp32_ms"] / max(entry["bf16_ms"], 1e-9)
    return f"bf16 autocast {ratio:.2f}x fp32 speed (fp32 {entry['fp32_ms']:.1f} ms, bf16 {entry['bf16_ms']:.1f} ms per step; bf16 needs {MARGIN}x)"


__all__ = ["BF16_FLAGS", "ENV", "FLAGS", "MARGIN", "MIN_HIDDEN", "SETTINGS", "CpuInfo", "Dtype", "autocast", "cache_file", "choose_dtype",
           "cpu_info", "measure"]
