"""Runs INSIDE the LLaMA-Factory virtual environment (no mmoral_pipeline import): converts an exported
dataset folder with LLaMA-Factory's own data pipeline (the code path of `llamafactory-cli train`, stage sft)
and prints one JSON line of figures. Driven by perf/llamafactory_loader.py (this file sits outside perf/*.py,
which `make perf` runs in the project's virtual environment).

    <venv>/bin/python perf/llamafactory/convert.py DATASET_DIR PROCESSOR_DIR OUT_DIR [--template qwen2_vl]
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset_dir")
    ap.add_argument("processor_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--template", default="qwen2_vl")
    ap.add_argument("--cutoff-len", type=int, default=8192)
    args = ap.parse_args()

    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import llamafactory
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with open(os.path.join(args.dataset_dir, "dataset_info.json")) as fh:
        names = sorted(json.load(fh))
    figures = {"llamafactory": llamafactory.__version__, "template": args.template, "datasets": {}}
    for name in names:
        with open(os.path.join(args.dataset_dir, name + ".json")) as fh:
            records = json.load(fh)
        t0 = time.perf_counter()
        model_args, data_args, training_args, _, _ = get_train_args(
            {
                "stage": "sft",
                "do_train": True,
                "model_name_or_path": args.processor_dir,
                "dataset": name,
                "dataset_dir": args.dataset_dir,  # media_dir defaults to it: relative image paths resolve here
                "template": args.template,
                "cutoff_len": args.cutoff_len,
                "output_dir": os.path.join(args.out_dir, name),
                "overwrite_cache": True,
                "finetuning_type": "lora",
                "report_to": "none",
                "per_device_train_batch_size": 1,
            }
        )
        tokenizer_module = load_tokenizer(model_args)
        tokenizer = tokenizer_module["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
        train = module["train_dataset"]
        start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
        pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        vision_blocks = [row.count(start) for row in train["input_ids"]]
        pads = [row.count(pad) for row in train["input_ids"]]
        images = [len(r.get("images") or []) for r in records]
        figures["datasets"][name] = {
            "records": len(records),
            "converted": train.num_rows,
            "images_per_record": sorted(set(images)),
            "vision_blocks_per_sample": sorted(set(vision_blocks)),
            "image_pad_tokens": pads,  # per sample, in record order
            "samples_with_image_tokens": sum(1 for p in pads if p > 0),
            "samples_with_labels": sum(1 for row in train["labels"] if any(t != -100 for t in row)),
            "seconds": round(time.perf_counter() - t0, 2),
        }
    print("LLAMAFACTORY_FIGURES " + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
