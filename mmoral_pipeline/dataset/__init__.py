"""Instruction dataset: assembly, de-duplication, split, exports and per-sample lineage."""
