"""A few training steps: through the entry point directly, then through Dagster Pipes; inference after."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import dagster as dg
from PIL import Image

from mmoral_pipeline.training.run import CHECK_NAME, main

TINY_TEST_SIZES = {"tiny_vocab_size": 400, "tiny_hidden_size": 64, "tiny_layers": 2}  # as in conftest.py

EXPECTED_METADATA = {
    "checkpoint_path",
    "weights_sha256",
    "params_total",
    "params_trainable",
    "samples_per_s",
    "tokens_per_s",
    "wall_time_s",
    "device",
    "loss_start",
    "loss_end",
    "loss_plot",
    "loss_curve",
    "steps",
}


def _sets(d):
    return [a for k, v in d.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def test_entry_point_trains_and_saves(toy_export, tmp_path, capsys):
    out = tmp_path / "ckpt"
    rc = main(
        _sets(
            {
                "train_jsonl": toy_export["train"],
                "output_dir": str(out),
                "max_steps": 3,
                "per_device_train_batch_size": 4,
                "logging_steps": 1,
                **TINY_TEST_SIZES,
            }
        )
    )
    assert rc == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["steps"] == 3 and len(report["losses"]) == 3
    assert all(math.isfinite(x) for x in report["losses"])
    weights = out / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == report["weights_sha256"]
    assert (out / "loss_curve.png").stat().st_size < 60_000
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(out, local_files_only=True)  # saved beside the weights
    assert "{%- generation -%}" in processor.chat_template
    assert report["tokens_per_s"] > 0 and report["samples_per_s"] > 0
    assert report["params_trainable"] == report["params_total"]  # full fine-tuning


def test_sft_model_asset_via_pipes(toy_export, tmp_path, monkeypatch):
    from mmoral_pipeline.defs.training import sft_model, training_resources
    from mmoral_pipeline.progress import PROGRESS_MARK

    monkeypatch.setenv("MMORAL_PROGRESS_EVERY_S", "0")  # a progress line at every step (the trainer inherits it)
    out = tmp_path / "asset_ckpt"
    config = {
        "train_jsonl": toy_export["train"],
        "output_dir": str(out),
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "learning_rate": 5e-3,
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [sft_model],
            resources=training_resources,
            instance=instance,
            run_config={"ops": {"sft_model": {"config": config}}},
        )
        # the trainer's progress reached the run log (what the UI shows) through Pipes
        messages = [
            e.user_message for e in instance.all_logs(result.run_id) if e.user_message.startswith(PROGRESS_MARK)
        ]
    assert result.success
    assert messages[0] == f"{PROGRESS_MARK} SFT: starting, 4 steps"
    steps = [m for m in messages if "ETA" in m]  # steps 1-3 (step 4 closes); a step's loss is logged after its line
    assert len(steps) == 3 and all(" samples/s" in m for m in steps) and all("loss " in m for m in steps[1:]), messages
    assert messages[-1].startswith(f"{PROGRESS_MARK} SFT: 4/4 steps (100 %)") and "done in" in messages[-1]
    assert "loss " in messages[-1]
    (mat,) = result.asset_materializations_for_node("sft_model")
    assert set(mat.metadata) >= EXPECTED_METADATA
    assert mat.metadata["loss_plot"].value.startswith("![training loss](data:image/png;base64,")
    assert math.isfinite(mat.metadata["loss_end"].value)
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert mat.metadata["weights_sha256"].value == digest
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CHECK_NAME
    assert check.passed == (mat.metadata["loss_end"].value < mat.metadata["loss_start"].value)


def test_generate_answers_accepts_paths_pil_and_base64(tiny_checkpoint, toy_export):
    from mmoral_pipeline.training.infer import generate_answers

    row = json.loads(Path(toy_export["val"]).read_text().splitlines()[0])
    path = row["images"][0]
    b64 = base64.b64encode(Path(path).read_bytes()).decode()
    items = [
        {"image": path, "messages": row["messages"]},
        {"image": Image.open(path), "prompt": "Where is the lesion?"},
        {"image": b64, "prompt": "Where is the lesion?"},
        {"image": "", "prompt": "Is a tooth missing?"},
    ]
    answers = generate_answers(tiny_checkpoint, items, max_new_tokens=5, batch_size=3)
    assert len(answers) == 4 and all(isinstance(a, str) for a in answers)
    # the same picture given as PIL and as base64 gives the same greedy answer
    assert answers[1] == answers[2]
    assert (
        generate_answers(tiny_checkpoint, items[:2], use_images=False, max_new_tokens=5)[1]
        == generate_answers(tiny_checkpoint, [{"prompt": "Where is the lesion?"}], max_new_tokens=5)[0]
    )


def test_defs_module_does_not_import_heavy_libraries():
    code = (
        "import sys, mmoral_pipeline.defs.training as t; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules]; "
        "assert not heavy, heavy; assert t.training_defs is not None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lora_run_saves_an_adapter_that_inference_loads(toy_export, tmp_path):
    from mmoral_pipeline.training.infer import generate_answers
    from mmoral_pipeline.training.settings import SftSettings
    from mmoral_pipeline.training.trainer import train

    out = tmp_path / "lora"
    report = train(
        SftSettings(
            train_jsonl=toy_export["train"],
            output_dir=str(out),
            finetune="lora",
            lora_r=4,
            max_steps=2,
            per_device_train_batch_size=4,
            logging_steps=1,
            gradient_checkpointing=True,
            **TINY_TEST_SIZES,
        ),
        log=lambda _m: None,
    )
    assert 0 < report.params_trainable < report.params_total / 2
    assert report.weights_files == ["adapter_model.safetensors"]
    assert (out / "base_model.txt").read_text().strip() == str(out.with_name("lora_base"))
    row = json.loads(Path(toy_export["val"]).read_text().splitlines()[0])
    (answer,) = generate_answers(out, [{"image": row["images"][0], "messages": row["messages"]}], max_new_tokens=3)
    assert isinstance(answer, str)


def test_launchpad_config_mirrors_the_trainer_settings():
    from mmoral_pipeline.defs.training import TRAINER_MODULE as TRAINER
    from mmoral_pipeline.defs.training import SftRunConfig
    from mmoral_pipeline.training.settings import SftSettings

    config_fields = set(SftRunConfig.model_fields) - {"launcher"}
    assert config_fields == set(SftSettings.model_fields)
    settings = SftRunConfig().to_settings()
    for name in config_fields - {"train_jsonl", "output_dir"}:  # same defaults on both sides
        assert getattr(settings, name) == SftSettings.model_fields[name].default, name
    assert settings.train_jsonl.endswith("exports/trl/train.jsonl")
    command = SftRunConfig(launcher="torchrun --nproc_per_node 2").command()
    assert command[0].endswith("torchrun") and command[1:] == ["--nproc_per_node", "2", "-m", TRAINER]
    assert SftRunConfig().command()[1:] == ["-m", TRAINER]
