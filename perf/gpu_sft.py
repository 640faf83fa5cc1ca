"""SFT throughput of a Qwen2.5-VL-7B-shaped model with random weights: tokens/s, MFU, peak memory.

For LoRA and full fine-tuning at several `max_pixels` settings, one training step = forward + backward +
AdamW step on a synthetic batch shaped like an MMOral sample (a 2:1 panoramic image resized to the pixel
budget exactly as Qwen2VLImageProcessor's smart_resize does, a prompt, an answer with loss on it only).

Self-contained on purpose: torch + transformers (+ peft for LoRA) only, no trl, no tokenizer, no project
import (the GPU machine has no trl, no pydantic, no weights and no network). `--tiny` runs the same code on a
~1M-parameter config on CPU, to check the script before a device session.

    python perf/gpu_sft.py --tiny                              # CPU dry run (seconds)
    python perf/gpu_sft.py --out results.jsonl                 # on the GPU (see perf/gpu_sft.sh)
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import sys
import time

import torch

H200_DENSE_BF16_TFLOPS = 989.0  # vendor datasheet, dense; a measured 8192^3 bf16 matmul here reached ~790


def qwen25vl_7b_config(tiny: bool):
    from transformers import Qwen2_5_VLConfig

    if tiny:
        text = dict(vocab_size=1024, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, mrope=[4, 6, 6], tie=True)
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, fullatt_block_indexes=[1])
    else:  # Qwen/Qwen2.5-VL-7B-Instruct config.json
        text = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                    num_attention_heads=28, num_key_value_heads=4, mrope=[16, 24, 24], tie=False)
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                      fullatt_block_indexes=[7, 15, 23, 31])
    ids = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    if tiny:
        ids = dict(image_token_id=1000, video_token_id=1001, vision_start_token_id=1002, vision_end_token_id=1003)
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": text["mrope"]}
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=text["vocab_size"], hidden_size=text["hidden_size"], intermediate_size=text["intermediate_size"],
            num_hidden_layers=text["num_hidden_layers"], num_attention_heads=text["num_attention_heads"],
            num_key_value_heads=text["num_key_value_heads"], max_position_embeddings=128000,
            bos_token_id=min(151643, text["vocab_size"] - 1), eos_token_id=min(151645, text["vocab_size"] - 2),
            rope_parameters=rope, tie_word_embeddings=text["tie"], hidden_act="silu", rms_norm_eps=1e-6,
        ),
        vision_config=dict(
            depth=vision["depth"], hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
            num_heads=vision["num_heads"], out_hidden_size=text["hidden_size"], patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=112, fullatt_block_indexes=vision["fullatt_block_indexes"],
            in_channels=3, hidden_act="silu",
        ),
        tie_word_embeddings=text["tie"],
        **ids,
    )


def smart_resize(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """Qwen2VLImageProcessor's resize rule (multiples of 28, pixel count within [min, max])."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def synthetic_batch(config, batch: int, max_pixels: int, prompt_tokens: int, answer_tokens: int, device,
                    image_hw: tuple[int, int] = (1536, 3072)) -> tuple[dict, dict]:
    """One batch of identical-shape samples; returns (model inputs, counts)."""
    h, w = smart_resize(*image_hw, min_pixels=56 * 56, max_pixels=max_pixels)
    gh, gw = h // 14, w // 14
    patches = gh * gw  # temporal grid 1 (a still image is repeated over temporal_patch_size=2)
    image_tokens = patches // 4
    vocab = config.text_config.vocab_size
    low = 10
    high = min(vocab, config.image_token_id) - 1
    seqs, labels, mm = [], [], []
    for _ in range(batch):
        prompt = torch.randint(low, high, (prompt_tokens,))
        answer = torch.randint(low, high, (answer_tokens,))
        ids = torch.cat([
            torch.tensor([config.vision_start_token_id]),
            torch.full((image_tokens,), config.image_token_id),
            torch.tensor([config.vision_end_token_id]),
            prompt,
            answer,
        ])
        lab = ids.clone()
        lab[: ids.numel() - answer_tokens] = -100
        seqs.append(ids)
        labels.append(lab)
        mm.append((ids == config.image_token_id).long())
    inputs = {
        "input_ids": torch.stack(seqs).to(device),
        "attention_mask": torch.ones(batch, seqs[0].numel(), dtype=torch.long, device=device),
        "labels": torch.stack(labels).to(device),
        "pixel_values": torch.randn(batch * patches, 3 * 2 * 14 * 14, device=device),
        "image_grid_thw": torch.tensor([[1, gh, gw]] * batch, device=device),
        "mm_token_type_ids": torch.stack(mm).to(device),
    }
    counts = {"image_hw": [h, w], "patches_per_image": patches, "image_tokens": image_tokens,
              "seq_len": seqs[0].numel(), "tokens_per_step": batch * seqs[0].numel(),
              "loss_tokens_per_step": batch * answer_tokens}
    return inputs, counts


def param_counts(model) -> dict[str, int]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    visual = sum(p.numel() for p in base.model.visual.parameters())
    embed = base.model.language_model.embed_tokens.weight.numel()
    total = sum(p.numel() for p in base.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lm_head = base.lm_head.weight.numel()
    tied = base.lm_head.weight.data_ptr() == base.model.language_model.embed_tokens.weight.data_ptr()
    text_matmul = total - visual - embed - (0 if tied else lm_head) + lm_head  # embedding lookups are free
    return {"total": total, "trainable": trainable, "visual": visual, "text_matmul": text_matmul}


def model_flops_per_step(config, counts: dict, params: dict, mode: str, batch: int, train_vision: bool) -> float:
    """Model FLOPs (no recomputation counted): 6*N*T full, 4*N*T frozen weights (LoRA), + causal attention."""
    t = counts["seq_len"]
    tc = config.text_config
    factor = 6 if mode == "full" else 4
    text = factor * params["text_matmul"] * t
    attn = 3 * 2 * tc.num_hidden_layers * t * t * tc.hidden_size  # QK^T and AV, causal half, fwd + 2x bwd
    vfactor = 6 if train_vision else (4 if mode == "full" else 2)
    vision = vfactor * params["visual"] * counts["patches_per_image"]
    return batch * (text + attn + vision)


def run_one(mode: str, max_pixels: int, args, device, dtype) -> dict:
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = qwen25vl_7b_config(args.tiny)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    build_s = time.perf_counter() - t0
    train_vision = mode == "full" and not args.freeze_vision
    if not train_vision:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        if mode == "lora":
            model.enable_input_require_grads()
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
            target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"))
    model.train()
    params = param_counts(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                            fused=device.type == "cuda")
    inputs, counts = synthetic_batch(config, args.batch, max_pixels, args.prompt_tokens, args.answer_tokens, device)
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    if "mm_token_type_ids" not in inspect.signature(Qwen2_5_VLForConditionalGeneration.forward).parameters:
        inputs.pop("mm_token_type_ids")  # older transformers derive the multimodal rope index from input_ids
    flops = model_flops_per_step(config, counts, params, mode, args.batch, train_vision)

    def step() -> float:
        loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses = []
    for _ in range(args.warmup):
        losses.append(step())
    if device.type == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    for _ in range(args.steps):
        losses.append(step())  # float() syncs each step
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t1) / args.steps
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    result = {
        "mode": mode, "max_pixels": max_pixels, "batch": args.batch, "dtype": str(dtype).replace("torch.", ""),
        "gradient_checkpointing": args.gradient_checkpointing, "train_vision": train_vision,
        **counts, "params_total": params["total"], "params_trainable": params["trainable"],
        "build_s": round(build_s, 2), "step_s": round(dt, 4),
        "tokens_per_s": round(counts["tokens_per_step"] / dt, 1),
        "samples_per_s": round(args.batch / dt, 3),
        "model_tflops_per_step": round(flops / 1e12, 3),
        "achieved_tflops": round(flops / dt / 1e12, 2),
        "mfu_vs_989": round(flops / dt / (H200_DENSE_BF16_TFLOPS * 1e12), 4),
        "peak_mem_gib": round(peak / 2**30, 2),
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "finite": all(math.isfinite(x) for x in losses),
    }
    model = opt = inputs = None  # release the weights, optimiser state and batch before the next run
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="~1M-parameter config on CPU (dry run)")
    ap.add_argument("--modes", default="lora,full")
    ap.add_argument("--max-pixels", default="262144,1003520", help="comma list (paper: 262,144 .. 1,048,576)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--answer-tokens", type=int, default=384, help="loss tokens (report-length answer)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    ap.add_argument("--freeze-vision", action="store_true")
    ap.add_argument("--out", help="append one JSON line per configuration here")
    args = ap.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    import transformers

    print(f"# transformers {transformers.__version__}, device {device}, dtype {dtype}", flush=True)
    failures = 0
    for mode in args.modes.split(","):
        for mp in [int(x) for x in args.max_pixels.split(",")]:
            try:
                r = run_one(mode, mp, args, device, dtype)
            except torch.cuda.OutOfMemoryError as e:  # report and go on with the next configuration
                r = {"mode": mode, "max_pixels": mp, "error": f"OOM: {str(e)[:200]}"}
                failures += 1
                gc.collect()
                torch.cuda.empty_cache()
            except Exception as e:
                r = {"mode": mode, "max_pixels": mp, "error": f"{type(e).__name__}: {str(e)[:300]}"}
                failures += 1
            line = json.dumps(r)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(line + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
