"""`mmoral validate ITEMS.jsonl`: the pipeline's validators on externally written items.

Each input line is one JSON object: `image_id`, `task_type` (report, vqa_closed, vqa_open, dialogue,
attribute), `question`, `answer`, and where they apply `options` (four strings), `answer_letter`,
`turns` ([{"role", "content"}]); other keys are ignored. The image's attributes come from the
`image_attributes` table in $MMORAL_HOME (or --home). Output: one JSON line per input line, in
order: {"line": n, "passed": bool, "rejected_by": [...], "reasons": [...]}; a summary goes to stderr.
Exit status 0, or 2 when the items file or the attribute table cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from pydantic import ValidationError


def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("items", help="JSONL file of items (one JSON object per line)")
    p.add_argument("--home", default=None, help="where image_attributes is (default: $MMORAL_HOME)")


def _facts_by_image(image_ids: set[str], home: str | None) -> dict[str, Any]:
    import polars as pl

    from mmoral_pipeline.config import mmoral_home
    from mmoral_pipeline.defs.io_manager import read_table
    from mmoral_pipeline.domain.attributes import ImageAttributes
    from mmoral_pipeline.generation.facts import facts_of

    table = read_table("image_attributes", base_dir=home or mmoral_home(), partitions="all")  # every file in the folder
    rows = table.filter(pl.col("image_id").is_in(sorted(image_ids))).select("image_id", "document").to_dicts()
    out = {}
    for row in rows:
        doc = row["document"]
        attrs = (
            ImageAttributes.model_validate_json(doc) if isinstance(doc, str) else ImageAttributes.model_validate(doc)
        )
        out[row["image_id"]] = facts_of(attrs)
    return out


def run_validate(args: argparse.Namespace) -> int:
    from mmoral_pipeline.generation import validators as V

    try:
        with open(args.items, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"mmoral validate: cannot read {args.items}: {exc}", file=sys.stderr)
        return 2
    parsed: list[dict | str] = []
    for raw in lines:
        if not raw.strip():
            parsed.append("empty line")
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            parsed.append(f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        parsed.append(obj if isinstance(obj, dict) else "not a JSON object")
    wanted = {str(p.get("image_id")) for p in parsed if isinstance(p, dict) and p.get("image_id") is not None}
    try:
        facts = _facts_by_image(wanted, args.home) if wanted else {}
    except FileNotFoundError as exc:
        print(f"mmoral validate: no attributes to validate against: {exc}", file=sys.stderr)
        return 2
    tally: Counter = Counter()
    for n, item in enumerate(parsed, start=1):
        if isinstance(item, str):
            result = V.ItemResult(line=n, passed=False, rejected_by=["input"], reasons=[item])
        else:
            try:
                it = V.ExternalItem.model_validate(item)
            except ValidationError as exc:
                err = exc.errors()[0]
                result = V.ItemResult(line=n, passed=False, rejected_by=["input"],
                                      reasons=[f"{'.'.join(map(str, err['loc']))}: {err['msg']}"])
            else:
                if it.image_id not in facts:
                    result = V.ItemResult(line=n, passed=False, rejected_by=["image_id"],
                                          reasons=[f"unknown image_id {it.image_id!r}: not in image_attributes"])
                else:
                    result = V.item_result(n, V.validate_item(it, facts[it.image_id]))
        tally["passed" if result.passed else "rejected"] += 1
        tally.update(result.rejected_by)
        print(V.dumps(result.model_dump()))
    by = ", ".join(f"{k} {v}" for k, v in sorted(tally.items()) if k not in ("passed", "rejected"))
    print(
        f"validated {len(parsed)} items: {tally['passed']} passed, {tally['rejected']} rejected"
        + (f" ({by})" if by else ""),
        file=sys.stderr,
    )
    return 0
