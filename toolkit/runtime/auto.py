"""``load(name, runtime="auto")``: the fastest accurate runtime for this CPU, from a short cached measurement.

Which runtime is fastest depends on the CPU: on a Xeon with AMX (``amx_bf16``) PyTorch bf16 beat
ONNX int8 on ner-medical (11,419 against 10,124 chars/s; PyTorch fp32 7,168, ONNX fp32 6,885),
while without native bf16 it is the slowest of the four. So :func:`choose_runtime` measures:

* the candidates (names of :data:`toolkit.runtime.specs.RUNTIMES`): ``torch`` (PyTorch fp32,
  the reference), ``torch-bf16`` only on a CPU with native bf16 (:attr:`toolkit.cpu.CpuInfo.bf16_native`),
  ``onnx`` and ``onnx-int8`` only when the folder already has that export (auto never exports:
  the ``toolkit export`` command that would add one is logged at INFO);
* each candidate makes one untimed pass over a built-in probe (:data:`PROBE_TEXTS`, 43 Chinese texts
  of 13 to 176 characters written for this module: clinical notes, news, reviews; :data:`PROBE_PAIRS`
  for pair heads), which warms it up and gives the answers checked below; then :func:`measure` times
  them in interleaved rounds (every candidate once per round, so a busy neighbour slows all alike),
  each pass over :data:`PROBE_COPIES` copies of the probe so that batches group similar lengths as
  real work does (one copy in one batch is mostly padding, which understated ONNX by up to 3x); a
  candidate's speed is its fastest pass, in characters per second. 8-14 s for four candidates of a
  6-layer model on 2 cores, loading each runtime included (``benchmarks/results/runtime_auto.md``);
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
ROUNDS = 3  # timed passes per candidate, interleaved (2 once BUDGET_S seconds of timing are spent)
BUDGET_S = 6.0
PROBE_VERSION = 2  # in the cache key: choices measured by an earlier probe are measured again
PROBE_COPIES = 4  # a timed pass runs the probe this many times over: batches of similar lengths, as real work is batched

# Written for this module (not taken from any corpus): clinical notes, news, reviews.
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
    "李明华教授带领复旦大学附属中山医院心内科团队，在《中华心血管病杂志》上发表了关于房颤射频消融术后复发的研究。",
    "中国人民银行宣布下调金融机构存款准备金率零点五个百分点，释放长期资金约一万亿元。",
    "华为技术有限公司在德国慕尼黑开设了新的研究中心，主要从事光通信和人工智能方面的研究。",
    "王小红从湖南长沙考入清华大学，毕业后在国家发展和改革委员会工作了八年。",
    "联合国秘书长古特雷斯在纽约总部呼吁各方保持克制，通过对话解决争端。",
    "浙江省杭州市西湖区人民法院对这起合同纠纷案作出一审判决，驳回原告全部诉讼请求。",
    "患儿，女，五岁，发热伴皮疹两天，咽部充血，扁桃体二度肿大，血常规白细胞升高，诊断为猩红热，予青霉素静脉滴注。",
    "甲状腺彩超示右叶低回声结节，大小约1.2cm×0.8cm，边界不清，建议行细针穿刺活检。",
    "慢性阻塞性肺疾病急性加重期患者应给予低流量吸氧、支气管扩张剂及糖皮质激素治疗，必要时使用无创呼吸机。",
    "头孢曲松钠皮试阴性后静脉滴注，每日一次，同时监测肝肾功能。",
    "手机用了一个月就开始发烫，电池掉电特别快，售后说要寄回厂家检测，太麻烦了。",
    "孩子很喜欢这套绘本，图画精美，故事也有教育意义，纸张厚实不伤手。",
    "外卖送到的时候已经凉了，米饭有点硬，不过商家主动给退了一部分钱，态度还可以。",
    "刘德明在广州白云国际机场接受了中央电视台记者的采访，介绍了南方航空公司新开通的航线。",
    "广东省卫生健康委员会通报，全省本周新增登革热病例三十二例，主要集中在广州和佛山。",
    "胃镜检查提示慢性萎缩性胃炎伴肠上皮化生，幽门螺杆菌阳性，予四联疗法根除治疗十四天。",
    "出院小结：患者因反复上腹痛两月余入院，入院后查腹部增强CT示胰头占位，CA19-9明显升高，经多学科讨论后于全麻下行胰十二指肠切除术，"
    "术后病理为胰腺导管腺癌，切缘阴性，区域淋巴结未见转移。术后出现胃排空延迟，经禁食、胃肠减压及营养支持后好转，现恢复半流质饮食，"
    "切口愈合良好，予以出院。出院后继续口服胰酶肠溶胶囊，一个月后至肿瘤内科门诊评估辅助化疗方案。",
    "本报讯（记者陈晓东）昨日，由中国科学技术协会和四川省人民政府共同主办的科技创新论坛在成都开幕，来自清华大学、浙江大学、"
    "中国航天科技集团等单位的三百余名专家学者参加。与会代表围绕人工智能、新能源和生物医药等领域的关键技术进行了交流，"
    "论坛期间还签署了十二项产学研合作协议，总金额超过四十亿元。",
    "这款扫地机器人买了快半年了，说说真实感受：优点是吸力够大，规划路线比较合理，app操作也简单，地毯上的猫毛基本都能吸干净；"
    "缺点是噪音偏大，晚上不太敢开，边角清扫不到位，尘盒太小，两三天就得倒一次。客服回复还算及时，总体来说这个价位还是值得买的，"
    "但别指望它完全代替人工打扫。",
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


def measure(pipes: dict[str, Any], rounds: int = ROUNDS, budget_s: float = BUDGET_S) -> tuple[dict[str, float], dict[str, dict[str, list]]]:
    """``({candidate: characters per second}, {candidate: {task: answers}})`` on the probe.

    Each candidate first makes one untimed pass over the probe (kernel choice, buffers; its answers
    are the ones checked); then, in ``rounds`` rounds (at least 2; fewer than ``rounds`` once
    ``budget_s`` is spent), every candidate in turn makes one timed pass over :data:`PROBE_COPIES`
    copies of the probe, so they are batched by length as real work is and a busy neighbour slows
    all of them alike. A candidate's speed is its fastest pass."""
    outputs = {name: answers(pipe) for name, pipe in pipes.items()}
    best: dict[str, float] = {}
    spent = 0.0
    for done in range(max(1, rounds)):
        if done >= 2 and spent > budget_s:
            break
        for name, pipe in pipes.items():
            chars, seconds = time_pass(pipe)
            spent += seconds
            best[name] = max(best.get(name, 0.0), chars / max(seconds, 1e-9))
    return best, outputs


def answers(pipe) -> dict[str, list]:
    """``{task: answers}`` of ``pipe`` on one copy of the probe (untimed; it also warms the runtime up)."""
    found = [part.run(list(inputs)) for part, inputs in probe(pipe)]
    return {task: [r[task] for rows in found for r in rows if task in r] for task in pipe.kinds}


def characters(inputs: Sequence[Any]) -> int:
    """Characters in ``inputs``: a text's length, a pair's ``len(a) + len(b)`` (what chars/s counts).

    >>> characters(["头痛", ("头痛", "头疼")])
    6
    """
    return sum(len(x) if isinstance(x, str) else len(x[0]) + len(x[1]) for x in inputs)


def time_pass(pipe) -> tuple[int, float]:
    """``(characters, seconds)`` of one pass of ``pipe`` over :data:`PROBE_COPIES` copies of the probe, end to end."""
    parts = [(part, list(inputs) * PROBE_COPIES) for part, inputs in probe(pipe)]
    chars = sum(characters(inputs) for _, inputs in parts)
    start = time.perf_counter()
    for part, inputs in parts:
        part.run(inputs)
    return chars, time.perf_counter() - start


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
    for name in names:
        if name == "torch-bf16" and "torch" in pipes:  # the same weights under autocast: no second copy of the model
            pipes[name] = pipes["torch"].with_runner(TorchRunner(pipes["torch"].runner.model, "cpu", "bf16"))
        else:
            pipes[name] = load(str(path), tasks=tasks, batch_size=batch_size, progress=progress, threads=threads, **RUNTIMES[name])
    speeds, outputs = measure(pipes)
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
            f"|batch={batch_size or BATCH_SIZE}|candidates={','.join(names)}|probe={PROBE_VERSION}")


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
           "characters", "decide", "load_auto", "measure", "time_pass", "answers"]
