#!/usr/bin/env bash
# SFT throughput on the GPU machine, in ONE call of the device tool (4 configurations, each capped at 120 s,
# expected 3-5 minutes in all; give the call timeout_s 540):
# a Qwen2.5-VL-7B-shaped model with random weights (no weights exist there, nothing can be downloaded),
# LoRA and full fine-tuning, each at max_pixels 262,144 and 1,003,520; tokens/s, MFU, peak memory.
#
# Device tool call (from the repo root):  command: "bash perf/gpu_sft.sh", timeout_s: 540
# Needs only what the machine already has (torch 2.11, transformers 5.17, peft): no trl, no pydantic, no wheels,
# because perf/gpu_sft.py is self-contained. If peft were missing there, carry it as a wheel (.whl/, see
# /work/.library/device/README.md) and this script installs it to /tmp/site first.
# CPU dry run of the whole script (extra arguments go to gpu_sft.py; later ones win):
#   OUT=/tmp/o bash perf/gpu_sft.sh --tiny --steps 1 --warmup 1 --batch 1 --prompt-tokens 8 --answer-tokens 8
#
# Part 2, "does it read the X-ray?", runs when MODEL names a local Qwen2.5-VL checkpoint (and the project is installed
# with trl): fine-tune it on the TRL export (LoRA, one epoch; perf/cpu_sft.py with SftSettings' defaults for a real
# model), then score the base and the fine-tuned model on the benchmark TSVs with `mmoral bench`: each beside its
# text-only and other-patient-image runs, the question-wording prior, the most frequent letter and random. A model
# that reads the X-ray scores clearly above its other-image run; results in $OUT/read/bench/results.md.
#   MODEL=/weights/Qwen2.5-VL-7B-Instruct THROUGHPUT=0 bash perf/gpu_sft.sh
# Inputs (defaults from `make demo`): TRAIN=$MMORAL_HOME/exports/trl/train.jsonl, BENCH=$MMORAL_HOME/exports/bench,
# PRIOR_TRAIN=$MMORAL_HOME/instruction_samples.parquet; knobs FINETUNE=lora|full, STEPS (max steps), LIMIT (rows per TSV),
# MAX_NEW_TOKENS_OPEN (answer cap on open questions, default 256).
# CPU dry run of part 2 with a tiny checkpoint (tests/evaluation/test_gpu_read_stage.py runs this):
#   MODEL=.mmoral/sft_model/latest_base THROUGHPUT=0 STEPS=2 LIMIT=10 OUT=/tmp/o bash perf/gpu_sft.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_sft_out}"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
PY=${PY:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
{
  date -u; command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/env.txt"
rc=0
if [ "${THROUGHPUT:-1}" != "0" ]; then
  rm -f "$OUT/gpu_sft.jsonl"
  # 1) LoRA at both pixel budgets, 2) full fine-tuning at both; each configuration in its own process so that
  # one OOM or crash cannot take the others down, and so memory is returned between them.
  for mode in lora full; do
    for mp in 262144 1003520; do
      timeout 120 $PY perf/gpu_sft.py --modes "$mode" --max-pixels "$mp" --batch 4 --warmup 2 --steps 5 \
        --out "$OUT/gpu_sft.jsonl" "$@" 2>&1 | grep -v -i "warn" | tee -a "$OUT/log.txt" || rc=1
    done
  done
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used --format=csv | tee -a "$OUT/env.txt"
  echo "results: $OUT/gpu_sft.jsonl"; cat "$OUT/gpu_sft.jsonl"
fi
if [ -n "${MODEL:-}" ]; then
  HOME_DIR="${MMORAL_HOME:-$PWD/.mmoral}"
  TRAIN="${TRAIN:-$HOME_DIR/exports/trl/train.jsonl}"; BENCH="${BENCH:-$HOME_DIR/exports/bench}"
  PRIOR_TRAIN="${PRIOR_TRAIN:-$HOME_DIR/instruction_samples.parquet}"; [ -f "$PRIOR_TRAIN" ] || PRIOR_TRAIN="$TRAIN"
  READ="$OUT/read"; mkdir -p "$READ"
  for f in "$TRAIN" "$BENCH/closed_ended.tsv" "$BENCH/open_ended.tsv"; do
    [ -f "$f" ] || { echo "gpu_sft.sh: $f does not exist (run make demo, or set TRAIN / BENCH)" >&2; exit 2; }
  done
  $PY perf/cpu_sft.py --base-model "$MODEL" --finetune "${FINETUNE:-lora}" --train-jsonl "$TRAIN" \
    --max-steps "${STEPS:--1}" --workdir "$READ" --output-dir "$READ/sft" --out "$READ/train.json" 2>&1 \
    | grep -v -i "warn" | tee "$READ/train_log.txt" || rc=1
  $PY -m mmoral_pipeline.cli bench --model "$MODEL" --model "$READ/sft" --model question_prior \
    --prior-train "$PRIOR_TRAIN" --model most_frequent --model random \
    --tsv "$BENCH/closed_ended.tsv" --tsv "$BENCH/open_ended.tsv" ${LIMIT:+--limit "$LIMIT"} \
    ${MAX_NEW_TOKENS_OPEN:+--max-new-tokens-open "$MAX_NEW_TOKENS_OPEN"} --out "$READ/bench" \
    2>&1 | grep -v -i "warn" | tee "$READ/bench.txt" || rc=1
  echo "does it read the X-ray? compare sft with sft-other-image: $READ/bench/results.md"
fi
exit $rc
