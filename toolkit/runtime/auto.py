"""``load(name, runtime="auto")``: the fastest accurate runtime for this CPU, from a short cached measurement.

Which runtime is fastest depends on the CPU: on a Xeon with AMX (``amx_bf16``) PyTorch bf16 beat
ONNX int8 on ner-medical (11,419 against 10,124 chars/s; PyTorch fp32 7,168, ONNX fp32 6,885),
while without native bf16 it is the slowest of the four. So :func:`choose_runtime` measures:

* the candidates (names of :data:`toolkit.runtime.specs.RUNTIMES`): ``torch`` (PyTorch fp32,
  the reference), ``torch-bf16`` only on a CPU with native bf16 (:attr:`toolkit.cpu.CpuInfo.bf16_native`),
  ``onnx`` and ``onnx-int8`` only when the folder already has that export (auto never exports:
  the ``toolkit export`` command that would add one is logged at INFO);
* each candidate warms up on a few texts, then is timed on a built-in probe (:data:`PROBE_TEXTS`, 24
  Chinese texts of 13 to 117 characters: clinical notes, news, reviews; :data:`PROBE_PAIRS` for pair
  heads): :func:`measure`, the best of 2-3 calls, in characters per second. A few seconds for all
  four on a BERT-base model at 7,000 chars/s (plus loading each runtime);
* accuracy guard: the answers of every other candidate on the probe are scored against PyTorch
  fp32's, taken as gold, with the head kind's own metric (:meth:`toolkit.kinds.base.HeadKind.score_gold`:
  span F1, accuracy); one below :data:`MIN_AGREEMENT` on any task is rejected (logged);
* the fastest accepted candidate wins, but the reference stays unless another is :data:`MARGIN`
  times faster.

The choice is cached in ``$TOOLKIT_HOME/runtime/<cpu>-<digest>.json`` (one file per CPU model and
flags, torch and onnxruntime versions; :func:`toolkit.files.cache_entry`), keyed by the model
folder's fingerprint (the sha256 of its weights, as ONNX exports record it), tasks, threads, batch
size and the candidates found, so later loads skip the measurement. ``$TOOLKIT_RUNTIME=torch|
torch-bf16|onnx|onnx-int8`` forces the choice. The choice and the measured speeds are logged at INFO.

Example:
    >>> choose_runtime("ner-medical", threads=2)  # doctest: +SKIP
    ({'runtime': 'torch', 'dtype': 'bf16'}, 'measured on Intel(R) Xeon(R) ... (amx_bf16, ...): torch-bf16 1.58x torch ...')
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from ..cpu import CpuInfo, cpu_info
from ..errors import ModelFileMissingError
from .specs import RUNTIMES

logger = logging.getLogger(__name__)

ENV = "TOOLKIT_RUNTIME"
REFERENCE = "torch"  # PyTorch fp32: what the others are checked against, and kept unless another is MARGIN x faster
MARGIN = 1.1
MIN_AGREEMENT = 0.95  # a candidate's score (span F1, accuracy) against the reference's answers on the probe
TIMED_CALLS = 3  # timed calls on the probe after the warm-up (2 when the first two took BUDGET_S)
BUDGET_S = 1.0
WARMUP = 4  # inputs of the untimed first call (kernel choice, buffers)

# Written for this module (not taken from any corpus): clinical notes, news, reviews; 10 to 120 characters.
PROBE_TEXTS = (
    "患者男性，六十二岁，因反复胸闷气短三年、加重一周入院。",
    "既往有高血压病史十余年，长期口服硝苯地平控释片，血压控制尚可。",
    "查体：体温37.8℃，双肺呼吸音粗，右下肺可闻及少量湿啰音。",
    "胸部CT提示右肺下叶炎症，建议抗感染治疗两周后复查。",
    "术后第三天伤口无渗出，饮食睡眠可，大小便正常。",
    "小儿腹泻伴轻度脱水时，应及时口服补液盐，避免自行使用抗生素。",
    "糖化血红蛋白8.2%，提示近三个月血糖控制不佳，需调整胰岛素剂量。",
    "夜间咳嗽加重，伴少量白痰，无咯血。",
    "服用阿莫西林0.5g，每日三次，连续7天后复查血常规和C反应蛋白。",
    "母亲患有2型糖尿病，父亲因脑梗死去世，否认其他家族遗传病史。入院后完善心电图、心脏彩超及冠脉造影检查，"
    "提示前降支近段狭窄约百分之八十，遂行支架植入术，术后给予阿司匹林联合氯吡格雷抗血小板治疗，并嘱低盐低脂饮食、戒烟限酒、定期门诊随访。",
    "国家统计局今天发布数据，上月全国居民消费价格同比上涨百分之零点四。",
    "第十九届亚运会在杭州举行，来自四十五个国家和地区的运动员报名参赛。",
    "受强降雨影响，广西多条河流水位上涨，当地已启动防汛四级应急响应。",
    "深圳一家新能源汽车企业宣布，将在匈牙利建设其在欧洲的第一座整车工厂。",
    "北京大学与中国科学院联合发布了一项关于青藏高原冰川变化的研究报告。",
    "记者从上海市交通委获悉，地铁十八号线二期工程预计明年年底通车。",
    "世界卫生组织提醒，冬春季节是流感高发期，老年人和儿童应尽早接种疫苗。",
    "张伟在接受采访时表示，公司今年的研发投入比去年增加了三成。",
    "房间干净整洁，前台服务热情，就是隔音稍微差了一点。",
    "物流很快，质量不错，好评！",
    "菜的分量太少，味道偏咸，等了四十分钟才上齐，不会再来了。",
    "这本书前半部分写得很精彩，后面有些拖沓，整体还算值得一读。",
    "屏幕有坏点，联系客服也没人回复，非常失望！",
    "酒店离地铁站只有五分钟路程，周边餐馆很多；早餐种类不算丰富，但味道不错，床品舒适，下次出差还会再住。",
)
# pairs for pair heads (matchers): each text with the next one, so related and unrelated pairs both occur
PROBE_PAIRS = tuple((a, b) for a, b in zip(PROBE_TEXTS, PROBE_TEXTS[1:] + PROBE_TEXTS[:1]))


@dataclass
class RuntimeChoice:
    """What :func:`choose_runtime` decided: the candidate's ``name`` (a key of ``RUNTIMES``), its
    :func:`toolkit.load` keyword arguments, why, the characters per second of each candidate on the
    probe and its agreement with the reference (empty when nothing was measured: forced, or a single
    candidate; a cached choice keeps those of its measurement), and whether it came from the cache."""

    name: str
    load: dict[str, str]
    reason: str
    chars_per_s: dict[str, float] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_runtime(path: str | Path, tasks: str | Sequence[str] | None = None, threads: int | None = None, batch_size: int | None = None,
                   cache: bool = True) -> tuple[dict[str, str], str]:
    """``(load keyword arguments, reason)``: the fastest accurate runtime for ``path`` (a model folder
    or registered name) with ``tasks``, ``threads`` and ``batch_size`` as :func:`toolkit.load` takes
    them, on this CPU (see the module docstring). ``cache=False`` measures again and writes nothing.

    Example:
        >>> options, reason = choose_runtime("ner-medical", threads=2)  # doctest: +SKIP
        >>> pipe = toolkit.load("ner-medical", threads=2, **options)  # doctest: +SKIP
    """
    choice, _ = decide(path, tasks, threads, batch_size, cache)
    return dict(choice.load), choice.reason


def check_options(quantize: str | None = None, dtype: str = "fp32", export: bool = False) -> None:
    """Refuse what ``runtime="auto"`` decides itself (quantisation, dtype) or never does (export):
    the one check behind :func:`toolkit.load` and :func:`toolkit.runtime.evaluation.evaluate`.

    >>> check_options()
    """
    if quantize is not None or dtype != "fp32" or export:
        raise ValueError("runtime='auto' chooses the runtime, quantisation and dtype itself and never exports: drop quantize=, dtype= "
                         "and export=, or name the runtime (e.g. runtime='onnx', quantize='int8' or runtime='torch', dtype='bf16')")


def load_auto(name_or_path: str | Path, tasks: str | Sequence[str] | None = None, device: str = "cpu", batch_size: int | None = None,
              progress: bool = False, threads: int | None = None, cache: bool = True):
    """:func:`toolkit.load` with ``runtime="auto"``: the pipeline of the chosen runtime (the one built
    while measuring, when there was a measurement), its ``runtime_choice`` set (:meth:`RuntimeChoice.as_dict`)."""
    from .. import load

    if device != "cpu":
        choice = RuntimeChoice(REFERENCE, dict(RUNTIMES[REFERENCE]), f"device {device}: auto measures CPU runtimes only, so PyTorch fp32")
        pipe = None
    else:
        choice, pipe = decide(name_or_path, tasks, threads, batch_size, cache, progress=progress, keep=True)
    if pipe is None:
        pipe = load(str(name_or_path), tasks=tasks, device=device, batch_size=batch_size, progress=progress, threads=threads, **choice.load)
    pipe.runtime_choice = choice.as_dict()
    return pipe


def candidates(folder: str | Path, info: CpuInfo | None = None, fp: dict[str, Any] | None = None) -> list[str]:
    """The runtimes auto may choose for ``folder`` here: ``torch`` (when torch is installed),
    ``torch-bf16`` (and the CPU has native bf16), ``onnx`` / ``onnx-int8`` (onnxruntime is installed
    and the folder has that export). Missing exports are logged at INFO with the command that makes them."""
    from .export import find_export

    info = info or cpu_info()
    found = []
    if _installed("torch"):
        found.append("torch")
        if info.bf16_native:
            found.append("torch-bf16")
        else:
            logger.debug("no torch-bf16: %s has no native bf16", info.describe())
    if not _installed("onnxruntime"):
        logger.info("ONNX Runtime is not installed, so runtime='auto' cannot consider it (pip install onnxruntime)")
        return found
    for name, quantize in (("onnx", None), ("onnx-int8", "int8")):
        if find_export(folder, quantize, fp) is not None:
            found.append(name)
        else:
            flag = " --quantize int8" if quantize else ""
            logger.info("%s has no up-to-date %s export, so runtime='auto' does not consider %s: `toolkit export %s%s` makes it",
                        folder, "int8" if quantize else "ONNX", name, folder, flag)
    return found


def measure(pipe, repeats: int = TIMED_CALLS, budget_s: float = BUDGET_S) -> tuple[float, dict[str, list]]:
    """``(characters per second, {task: answers})`` of ``pipe`` on the probe: a warm-up call on a few
    inputs, then the best of ``repeats`` timed calls on all (2 once ``budget_s`` is spent); the
    answers are those of the first timed call."""
    parts = probe(pipe)
    chars = sum(len(x) if isinstance(x, str) else len(x[0]) + len(x[1]) for _, inputs in parts for x in inputs)
    for part, inputs in parts:
        part.run(list(inputs[:WARMUP]))
    times: list[float] = []
    answers: list[list[dict[str, Any]]] = []
    while len(times) < max(1, repeats) and not (len(times) >= 2 and sum(times) > budget_s):
        start = time.perf_counter()
        found = [part.run(list(inputs)) for part, inputs in parts]
        times.append(time.perf_counter() - start)
        answers = answers or found
    outputs = {task: [r[task] for rows in answers for r in rows if task in r] for task in pipe.kinds}
    return chars / max(min(times), 1e-9), outputs


def probe(pipe) -> list[tuple[Any, tuple]]:
    """``[(pipeline part, inputs)]``: :data:`PROBE_TEXTS` for the text heads, :data:`PROBE_PAIRS` for the pair heads
    (a multi-task pipeline's ``.text`` and ``.pair``, as :mod:`toolkit.runtime.evaluation` tells them apart)."""
    sides = dict.fromkeys(kind.input for kind in pipe.kinds.values())
    return [(getattr(pipe, side, pipe), PROBE_PAIRS if side == "pair" else PROBE_TEXTS) for side in sides]


def agreement(kinds: dict[str, Any], reference: dict[str, list], outputs: dict[str, list]) -> float:
    """The lowest, over tasks, of the kind's main score (span F1, accuracy) of ``outputs`` taking
    ``reference``'s answers as gold (1.0 where they are identical, e.g. both find no entity)."""
    from .specs import agreement as same_fraction

    scores = []
    for task, kind in kinds.items():
        ours, gold = kind.comparable(outputs[task]), kind.comparable(reference[task])
        if ours == gold:
            scores.append(1.0)
            continue
        try:
            scores.append(float(kind.score_gold(ours, gold)["main"]))
        except NotImplementedError:  # a kind of user code that only scores against examples
            scores.append(same_fraction(ours, gold))
    return min(scores, default=1.0)


def decide(path: str | Path, tasks: str | Sequence[str] | None = None, threads: int | None = None, batch_size: int | None = None,
           cache: bool = True, progress: bool = False, keep: bool = False) -> tuple[RuntimeChoice, Any]:
    """``(RuntimeChoice, pipeline or None)``: :func:`choose_runtime`'s decision; with ``keep`` also the
    chosen pipeline when it was built to measure (else ``None``). Logged at INFO."""
    choice, pipe = _decide(path, tasks, threads, batch_size, cache, progress, keep)
    logger.info("runtime %s for %s: %s", choice.name, path, choice.reason)
    return choice, pipe


def _decide(path, tasks, threads, batch_size, cache, progress, keep) -> tuple[RuntimeChoice, Any]:
    from ..registry import resolve_tasks
    from .export import fingerprint

    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in RUNTIMES:
            raise ValueError(f"${ENV} must be one of {', '.join(RUNTIMES)}, got {forced!r}")
        return RuntimeChoice(forced, dict(RUNTIMES[forced]), f"${ENV}={forced}"), None
    folder, selected = resolve_tasks(path, tasks)
    info = cpu_info()
    fp = fingerprint(folder)
    names = candidates(folder, info, fp)
    if not names:
        raise ModelFileMissingError(f"runtime='auto' has nothing to run {folder} on: torch is not installed and the folder has no ONNX "
                                    f"export; make one with `toolkit export {folder}` (needs torch), or install torch")
    if len(names) == 1:
        return RuntimeChoice(names[0], dict(RUNTIMES[names[0]]), f"the only runtime available here ({info.describe()})"), None
    file = cache_file(info)
    key = _key(folder, fp, selected, threads, batch_size, names)
    if cache:
        from ..files import cached_entry

        entry = cached_entry(file, key)
        if entry and entry.get("choice") in names:
            return RuntimeChoice(entry["choice"], dict(RUNTIMES[entry["choice"]]), f"cached measurement {file} ({entry.get('reason', '')})",
                                 entry.get("chars_per_s", {}), entry.get("agreement", {}), cached=True), None
    choice, pipe = _measure_all(path, tasks, names, threads, batch_size, progress, info)
    if cache:
        from ..files import cache_entry

        entry = {"choice": choice.name, "reason": choice.reason, "chars_per_s": choice.chars_per_s, "agreement": choice.agreement,
                 "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        cache_entry(file, key, entry, {"cpu": info.model, "flags": sorted(info.flags), "versions": _versions()}, "the runtime measurement")
    return choice, pipe if keep else None


def _measure_all(path, tasks, names: list[str], threads, batch_size, progress, info: CpuInfo) -> tuple[RuntimeChoice, Any]:
    """Build, time and check every candidate; the choice and its pipeline."""
    from .. import load
    from .pipeline import TorchRunner

    pipes: dict[str, Any] = {}
    speeds: dict[str, float] = {}
    outputs: dict[str, dict[str, list]] = {}
    for name in names:
        if name == "torch-bf16" and "torch" in pipes:  # the same weights under autocast: no second copy of the model
            pipes[name] = pipes["torch"].with_runner(TorchRunner(pipes["torch"].runner.model, "cpu", "bf16"))
        else:
            pipes[name] = load(str(path), tasks=tasks, batch_size=batch_size, progress=progress, threads=threads, **RUNTIMES[name])
        speeds[name], outputs[name] = measure(pipes[name])
    reference = names[0]  # torch when installed, else onnx fp32 (or int8 alone: nothing to check it against)
    kinds = pipes[reference].kinds
    agree = {n: round(agreement(kinds, outputs[reference], outputs[n]), 4) for n in names if n != reference}
    rejected = [n for n, a in agree.items() if a < MIN_AGREEMENT]
    for n in rejected:
        logger.info("runtime='auto' rejects %s: its answers on the probe score %.3f against %s's (needs %.2f)", n, agree[n], reference, MIN_AGREEMENT)
    accepted = {n: v for n, v in speeds.items() if n not in rejected}
    best = max(accepted, key=accepted.__getitem__)
    if best != reference and accepted[best] < MARGIN * speeds[reference]:
        best = reference
    ratios = ", ".join(f"{n} {speeds[n] / speeds[reference]:.2f}x" for n in names if n != reference)
    measured = ", ".join(f"{n} {v:,.0f}" for n, v in speeds.items())
    reason = f"measured on {info.describe()}: {measured} chars/s on the probe ({ratios} {reference}; others need {MARGIN}x)"
    if rejected:
        reason += "; rejected for disagreeing with " + reference + ": " + ", ".join(f"{n} ({agree[n]:.3f} < {MIN_AGREEMENT})" for n in rejected)
    return RuntimeChoice(best, dict(RUNTIMES[best]), reason, {n: round(v, 1) for n, v in speeds.items()}, agree), pipes[best]


def cache_file(info: CpuInfo | None = None) -> Path:
    """``$TOOLKIT_HOME/runtime/<cpu>-<digest>.json``: one file per CPU model and flags, torch and onnxruntime versions."""
    from ..files import toolkit_home

    info = info or cpu_info()
    return toolkit_home() / "runtime" / info.cache_name(*_versions().values())


def _key(folder: Path, fp: dict[str, Any], selected: list[str] | None, threads: int | None, batch_size: int | None, names: list[str]) -> str:
    """The cache key: model (name and fingerprint digest), tasks, threads, batch size, candidates."""
    from .pipeline import BATCH_SIZE

    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    default = f"default({os.environ.get('OMP_NUM_THREADS') or os.cpu_count()})"
    return (f"{Path(folder).name}-{digest}|tasks={','.join(selected) if selected else 'all'}|threads={threads or default}"
            f"|batch={batch_size or BATCH_SIZE}|candidates={','.join(names)}")


def _versions() -> dict[str, str]:
    found = {}
    for package in ("torch", "onnxruntime"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "none"
    return found


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


__all__ = ["ENV", "MARGIN", "MIN_AGREEMENT", "PROBE_PAIRS", "PROBE_TEXTS", "RuntimeChoice", "agreement", "candidates", "check_options", "choose_runtime",
           "decide", "load_auto", "measure"]
