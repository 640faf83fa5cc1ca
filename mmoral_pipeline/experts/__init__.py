"""Visual experts: detectors that turn unannotated X-rays into scored boxes, as MMOral's experts did.

No Dagster here (the shell is `defs/experts.py`); torch is imported only by the modules that need it
(`model`, `torch_backend`, `train`), so the tables, classes and the ONNX backend load without it.

| module          | what                                                                        |
|-----------------|-----------------------------------------------------------------------------|
| `classes`       | label space: `tooth_<FDI>` per tooth, one class per other category          |
| `spec`          | `DetectorSpec` (architecture, input) and the checkpoint manifest            |
| `base`          | the `Expert` interface, `Detection`, batched prediction with throughput     |
| `torch_backend` | torchvision detector from `model.pt`                                        |
| `onnx_backend`  | ONNX Runtime on `model.onnx`; `export_onnx`                                 |
| `load`          | `load_expert(folder, backend, device)`                                      |
| `train`         | `train_expert`: split by image, train, COCO metrics, coverage, checkpoint    |
| `run`           | the Pipes entry point of the `expert_model` asset                           |
| `annotate`      | run experts over a batch: `expert_annotations` / `expert_coverage` rows     |
| `frames`        | those tables' schemas and their join with `raw_annotations`                  |
"""
