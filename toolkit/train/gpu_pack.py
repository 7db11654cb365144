"""The job folder of a GPU job: written here by :func:`pack`, read on the GPU machine by :func:`materialize`.

The GPU machine has no jieba or opencc and takes at most 64 MiB (the working tree and what is
carried, together), so the texts are tokenised and segmented here and travel small::

    JOB/job.json                  format, training settings, the data's sources, checksums
    JOB/data/ids.npy.xz           token ids (uint16 when the vocabulary allows), xz-compressed
    JOB/data/words.npy.xz         word ids as differences (int32), xz-compressed
    JOB/encoder/model.safetensors[.xz]   the start encoder in float16 (xz when that saves space)
    JOB/encoder/*.json, *.txt, *.model   its config and tokenizer
    JOB/teacher/...               with distillation: the pruned teacher (below)

With ``distill_weight`` the job carries the e5 teacher (:mod:`toolkit.train.distill`), pruned to
fit: its full unigram tokenizer (segmentation unchanged), but only the embedding rows of the
pieces the packed corpus produces (the packed rows rebuilt into text and tokenised as the
distiller will, :func:`toolkit.train.distill.corpus_pieces`, plus the special pieces; their ids in
``teacher.json``), in float16. Teacher tensors byte-identical to one of the packed encoder (the
layers, when the encoder is ``zh-e5-small-base``, built from the same e5) are stored as a name in
``job.json`` (``teacher.shared``), the others in ``JOB/teacher/model.safetensors``; each file xz
-compressed when that saves space. :func:`materialize` rebuilds a normal teacher folder
(:func:`toolkit.train.e5_teacher.save_teacher` layout) as ``WORK/teacher``.

Example:
    >>> pack("zh-e5-small-base", ["medical.txt"], "runs/gpu_job")["fits"]           # doctest: +SKIP
    >>> encoder, ids, words, spec = materialize(Path("runs/gpu_job"), Path("/tmp/w"))  # doctest: +SKIP
    >>> pack("zh-e5-small-base", ["medical.txt"], "runs/gpu_job", teacher="auto",
    ...      settings={"distill_weight": 1.0})["teacher_mib"]                         # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import lzma
import shutil
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .shards import WEIGHTS

logger = logging.getLogger(__name__)

FORMAT = 1
MIB = 1 << 20
DEVICE_MIB = 64  # what travels to the device (tree + carried) and what may come back, each
TEACHER = "teacher"  # the teacher's folder, in the job and in the work folder
# jobs packed before distillation lack the last five keys: run reads them as these defaults (no distillation)
TRAIN_DEFAULTS = {"batch_size": 128, "max_length": 128, "lr": 1e-4, "warmup": 0.06, "weight_decay": 0.01, "clip": 1.0,
                  "seed": 0, "max_steps": "auto", "save_every": 1000, "log_every": 50, "dtype": "auto",
                  "out_dtype": "float16", "distill_weight": 0.0, "mlm_weight": 1.0, "distill_loss": "mse",
                  "num_layers": None}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _xz_array(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return lzma.compress(buf.getvalue(), preset=6)


def _unxz_array(path: Path) -> np.ndarray:
    return np.load(io.BytesIO(lzma.decompress(path.read_bytes())), allow_pickle=False)


def _cast_weights(src: Path, dtype: str) -> bytes:
    """The safetensors bytes of ``src`` with floating tensors in ``dtype``."""
    import torch
    from safetensors.torch import load_file, save

    state = load_file(str(src))
    target = getattr(torch, dtype)
    return save({k: v.to(target) if v.dtype.is_floating_point else v for k, v in state.items()}, metadata={"format": "pt"})


def _xz_or_plain(blob: bytes) -> tuple[bytes, str]:
    """``(stored bytes, suffix)``: xz-compressed when that saves at least 5%."""
    packed = lzma.compress(blob, preset=6)
    return (packed, ".xz") if len(packed) < 0.95 * len(blob) else (blob, "")


def _tensor_keys(blob: bytes) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """Per tensor of the safetensors bytes ``blob``: (dtype, shape, sha256 of its bytes)."""
    from safetensors.numpy import load

    return {k: (v.dtype.str, v.shape, _sha(v.tobytes())) for k, v in load(blob).items()}


def _check_settings(train: dict[str, Any], teacher: str | Path | None, folder: Path) -> None:
    if train["distill_loss"] not in ("mse", "cosine"):
        raise ValueError(f"distill_loss must be mse or cosine, got {train['distill_loss']!r}")
    if train["distill_weight"] < 0 or train["mlm_weight"] < 0:
        raise ValueError("distill_weight and mlm_weight must be >= 0")
    if teacher is not None and not train["distill_weight"]:
        raise ValueError("a teacher without distillation: pass --distill-weight W (> 0) too, or leave out the teacher")
    if not train["distill_weight"] and not train["mlm_weight"]:
        raise ValueError("--mlm-weight 0 trains nothing without --distill-weight: give one of them a weight")
    if train["num_layers"] is not None:
        layers = json.loads((folder / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
        if not 1 <= train["num_layers"] <= layers:
            raise ValueError(f"--num-layers must be between 1 and the encoder's {layers} layers, got {train['num_layers']}")


def pack_teacher(source: str | Path, tokenizer, ids: np.ndarray, words: np.ndarray, max_length: int,
                 encoder_weights: bytes, job: Path) -> dict[str, Any]:
    """Write the teacher ``source``, pruned to the pieces of the packed rows of ``ids``, into
    ``job/teacher``; tensors equal to one of ``encoder_weights`` (safetensors bytes) are stored by
    name. Returns its entry of ``job.json``."""
    from safetensors.numpy import load, save

    from .distill import StudentText, corpus_pieces
    from .e5_teacher import Teacher, save_teacher
    from .mlm_data import Packed

    t0 = time.perf_counter()
    full = Teacher.load(source)
    keep = corpus_pieces(full, StudentText.of(tokenizer), Packed(ids, words, max_length, tokenizer).ids)
    pruned = full.prune(keep)
    with tempfile.TemporaryDirectory(prefix="gpu-job-teacher-") as scratch:
        save_teacher(pruned, scratch, dtype="float16")
        files = {f.name: f.read_bytes() for f in sorted(Path(scratch).iterdir()) if f.is_file()}
    if WEIGHTS not in files:
        raise RuntimeError(f"the pruned teacher was saved without {WEIGHTS} (got {sorted(files)}): is transformers too old?")
    state = load(files[WEIGHTS])
    by_content: dict[tuple, list[str]] = {}
    for name, key in _tensor_keys(encoder_weights).items():
        by_content.setdefault(key, []).append(name)
    shared = {}
    for name, key in _tensor_keys(files[WEIGHTS]).items():
        if key in by_content:  # the same name when the encoder has it (several equal tensors: e.g. fresh LayerNorms)
            shared[name] = name if name in by_content[key] else by_content[key][0]
    files[WEIGHTS] = save({k: v for k, v in state.items() if k not in shared}, metadata={"format": "pt"})
    (job / TEACHER).mkdir(parents=True, exist_ok=True)
    stored, stored_bytes = {}, 0
    for name, blob in files.items():
        data, suffix = _xz_or_plain(blob)
        stored[name] = f"{TEACHER}/{name}{suffix}"
        (job / stored[name]).write_bytes(data)
        stored_bytes += len(data)
    shared_bytes = sum(state[k].nbytes for k in shared)
    logger.info("teacher %s: %d of %d pieces kept, %d tensors (%.1f MiB) shared with the encoder, %.1f MiB stored "
                "(%.0f s)", source, len(pruned.keep), full.vocab_size, len(shared), shared_bytes / MIB,
                stored_bytes / MIB, time.perf_counter() - t0)
    return {"source": str(source), "files": stored, "sha256": {k: _sha(v) for k, v in files.items()}, "shared": shared,
            "pieces": int(len(pruned.keep)), "vocab_size": int(full.vocab_size), "max_length": int(max_length),
            "stored_mib": round(stored_bytes / MIB, 2), "shared_mib": round(shared_bytes / MIB, 2)}


def materialize_teacher(job: Path, entry: dict[str, Any], encoder_weights: Path, out: Path) -> Path:
    """Rebuild the teacher folder ``out`` from ``job``'s entry ``entry`` and the tensors it shares
    with the materialised encoder weights ``encoder_weights``."""
    from safetensors.numpy import load, load_file, save_file

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    own = {}
    for name, rel in entry["files"].items():
        src = job / rel
        blob = lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes()
        if _sha(blob) != entry["sha256"][name]:
            raise ValueError(f"{src} is damaged (checksum): pack the job again")
        if name == WEIGHTS:
            own = load(blob)
        else:
            (out / name).write_bytes(blob)
    encoder = load_file(str(encoder_weights))
    missing = sorted(set(entry["shared"].values()) - set(encoder))
    if missing:
        raise ValueError(f"the teacher of {job} shares tensors the encoder lacks ({missing[:3]}...): pack the job again")
    save_file(own | {k: encoder[v] for k, v in entry["shared"].items()}, str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def tree_mib(path: Path) -> float | None:
    """MiB of what the device tool sends from the git checkout holding ``path`` (tracked and
    untracked-not-ignored files), or ``None`` outside a git checkout."""
    try:
        top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
        names = subprocess.run(["git", "-C", top, "ls-files", "-z", "-co", "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files = [Path(top) / n for n in names.decode("utf-8", "replace").split("\0") if n]
    return round(sum(f.stat().st_size for f in files if f.is_file()) / MIB, 2)


def pack(encoder: str | Path, text_files: Sequence[str | Path], out: str | Path, *, splits: Sequence[str] = (),
         data_root: str | Path | None = None, run: str | Path | None = None, max_tokens: int | None = None,
         settings: dict[str, Any] | None = None, limit_mib: float = 60.0, teacher: str | Path | None = None) -> dict[str, Any]:
    """Write the job folder ``out``; returns a summary (sizes in MiB, tokens, whether it fits).

    ``run``: a ``toolkit pretrain`` run folder whose ``RUN/data`` cache is reused (or filled);
    ``max_tokens``: keep only the first texts, up to this many tokens. ``settings`` with
    ``distill_weight`` > 0: the job carries ``teacher`` (default ``"auto"``, see
    :meth:`toolkit.train.e5_teacher.Teacher.load`) pruned to the corpus's pieces.
    """
    from ..model.folder import replace_folder
    from ..registry import base_path
    from ..text.tokenization import TextTokenizer
    from .mlm_data import data_sources, prepare_data, read_texts

    unknown = set(settings or {}) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(TRAIN_DEFAULTS)}")
    train = TRAIN_DEFAULTS | (settings or {})
    folder, out = base_path(encoder), Path(out)
    if train["distill_weight"] and teacher is None:
        teacher = "auto"
    _check_settings(train, teacher, folder)
    tokenizer = TextTokenizer.from_pretrained(folder)
    sources = data_sources(text_files, splits, tokenizer)

    texts = partial(read_texts, text_files, splits, data_root)
    with tempfile.TemporaryDirectory(prefix="gpu-job-data-") as scratch:
        ids, words = prepare_data(Path(run) if run else Path(scratch), texts, sources, tokenizer)
    if max_tokens and len(ids) > max_tokens:
        seps = np.flatnonzero(ids[:max_tokens] == tokenizer.sep_id)
        if not len(seps):
            raise ValueError(f"--max-tokens {max_tokens} is shorter than the first text")
        ids, words = ids[:seps[-1] + 1], words[:seps[-1] + 1]
        sources = sources | {"max_tokens": int(max_tokens)}
    small = np.uint16 if len(tokenizer) <= 1 << 16 else np.int32
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    (tmp / "encoder").mkdir()
    blobs = {"data/ids.npy.xz": _xz_array(ids.astype(small)),
             "data/words.npy.xz": _xz_array(np.diff(words.astype(np.int64), prepend=0).astype(np.int32))}
    weights = _cast_weights(folder / WEIGHTS, "float16")
    packed = lzma.compress(weights, preset=6)
    name = f"encoder/{WEIGHTS}.xz" if len(packed) < 0.95 * len(weights) else f"encoder/{WEIGHTS}"
    blobs[name] = packed if name.endswith(".xz") else weights
    for rel, blob in blobs.items():
        (tmp / rel).write_bytes(blob)
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(("model", "pytorch_model")) and f.suffix in (".json", ".txt", ".model"):
            shutil.copyfile(f, tmp / "encoder" / f.name)
    spec = {"format": FORMAT, "encoder": {"source": str(encoder), "weights": name, "sha256": _sha(weights)},
            "data": {"tokens": int(len(ids)), "ids_dtype": np.dtype(small).name, "sources": sources,
                     "sha256": {"ids": _sha(ids.astype(np.int32).tobytes()), "words": _sha(words.astype(np.int32).tobytes())}},
            "train": train, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if teacher is not None:
        spec["teacher"] = pack_teacher(teacher, tokenizer, ids, words, train["max_length"], weights, tmp)
    (tmp / "job.json").write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")
    size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / MIB
    if size > limit_mib:
        shutil.rmtree(tmp)
        raise ValueError(f"the job would be {size:.1f} MiB, over --limit-mib {limit_mib}: pass --max-tokens "
                         f"(now {len(ids)} tokens) or a smaller encoder" + (" or no teacher" if teacher is not None else ""))
    replace_folder(tmp, out)
    data_mib = sum(len(b) for k, b in blobs.items() if k.startswith("data/")) / MIB
    tree = tree_mib(out.resolve().parent)
    summary = {"job": str(out), "mib": round(size, 2), "encoder_mib": round(len(blobs[name]) / MIB, 2),
               "data_mib": round(data_mib, 2), "tokens": int(len(ids)),
               "tokens_per_mib": int(len(ids) / max(data_mib, 1e-9)), "tree_mib": tree,
               "fits": None if tree is None else tree + size <= DEVICE_MIB}
    if teacher is not None:
        t = spec["teacher"]
        summary |= {"teacher_mib": t["stored_mib"], "teacher_shared_mib": t["shared_mib"],
                    "teacher_shared_tensors": len(t["shared"]), "teacher_pieces": t["pieces"], "teacher_vocab": t["vocab_size"]}
    if summary["fits"] is False:
        logger.warning("the device machine takes %d MiB in all: the tree (%.1f MiB) + this job (%.1f MiB) is too much; "
                       "shrink the tree or the job (--max-tokens)", DEVICE_MIB, tree, size)
    return summary


def materialize(job: Path, work: Path) -> tuple[Path, np.ndarray, np.ndarray, dict]:
    """Unpack ``job`` into ``work/encoder`` (and its teacher, if any, into ``work/teacher``);
    returns the encoder folder, the token and word ids and the job spec."""
    spec = json.loads((job / "job.json").read_text(encoding="utf-8"))
    if spec.get("format") != FORMAT:
        raise ValueError(f"{job}/job.json has format {spec.get('format')}, this toolkit reads {FORMAT}: pack again")
    enc = work / "encoder"
    shutil.rmtree(enc, ignore_errors=True)
    enc.mkdir(parents=True)
    for f in (job / "encoder").iterdir():
        if not f.name.startswith("model"):
            shutil.copyfile(f, enc / f.name)
    src = job / spec["encoder"]["weights"]
    weights = lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes()
    if _sha(weights) != spec["encoder"]["sha256"]:
        raise ValueError(f"{src} is damaged (checksum): pack the job again")
    (enc / WEIGHTS).write_bytes(weights)
    if "teacher" in spec:
        materialize_teacher(job, spec["teacher"], enc / WEIGHTS, work / TEACHER)
    ids = _unxz_array(job / "data" / "ids.npy.xz").astype(np.int32)
    words = np.cumsum(_unxz_array(job / "data" / "words.npy.xz"), dtype=np.int64).astype(np.int32)
    sha = spec["data"]["sha256"]
    if _sha(ids.tobytes()) != sha["ids"] or _sha(words.tobytes()) != sha["words"]:
        raise ValueError(f"the data in {job}/data is damaged (checksum): pack the job again")
    return enc, ids, words, spec
