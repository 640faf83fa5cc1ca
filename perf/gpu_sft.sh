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
rm -f "$OUT/gpu_sft.jsonl"
# 1) LoRA at both pixel budgets, 2) full fine-tuning at both; each configuration in its own process so that
# one OOM or crash cannot take the others down, and so memory is returned between them.
rc=0
for mode in lora full; do
  for mp in 262144 1003520; do
    timeout 120 $PY perf/gpu_sft.py --modes "$mode" --max-pixels "$mp" --batch 4 --warmup 2 --steps 5 \
      --out "$OUT/gpu_sft.jsonl" "$@" 2>&1 | grep -v -i "warn" | tee -a "$OUT/log.txt" || rc=1
  done
done
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used --format=csv | tee -a "$OUT/env.txt"
echo "results: $OUT/gpu_sft.jsonl"; cat "$OUT/gpu_sft.jsonl"
exit $rc
