"""Precision and recall of the claim validators on the labelled corpus (tests/generation/corpus/).

    python perf/validator_corpus.py                # figures per task type and overall, dev and held-out
    python perf/validator_corpus.py --errors       # also list the dev and ind-tune items the validators get wrong

An item counts as "rejected" when any validator fails it; recall is the share of hallucinated items
rejected, the false-rejection rate the share of faithful items rejected, precision the share of
rejected items that are hallucinated. The held-out part (groups whose sha256 is divisible by 3) was
not looked at while tuning (only these aggregate figures were); `--errors` never lists it.
`probes.jsonl` holds texts written while tuning (so not a measure of anything): reported apart.
`independent.jsonl` was written by a second author, before reading the extractor or the validators, and is
split in two halves by the sha256 of "independent:" + group: `ind-tune` (even; the only half looked at while
fixing errors) and `ind-check` (odd; only its aggregate figures are read).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmoral_pipeline.domain.attributes import ImageAttributes  # noqa: E402 - after the sys.path line above
from mmoral_pipeline.generation.facts import facts_of  # noqa: E402
from mmoral_pipeline.generation.validators import validate_item  # noqa: E402

CORPUS = ROOT / "tests" / "generation" / "corpus"
TASKS = ("report", "vqa_closed", "vqa_open", "dialogue", "attribute")


def split_of(group: str) -> str:
    return "heldout" if int(hashlib.sha256(group.encode()).hexdigest(), 16) % 3 == 0 else "dev"


def independent_half(group: str) -> str:
    return "ind-tune" if int(hashlib.sha256(f"independent:{group}".encode()).hexdigest(), 16) % 2 == 0 else "ind-check"


PARTS = ("dev", "heldout", "ind-tune", "ind-check")  # measured parts (probes are not a measure)


def load(corpus: Path = CORPUS) -> tuple[dict, list[dict]]:
    """Attribute facts by image id, and every item with its part: dev / heldout (the first corpus),
    ind-tune / ind-check (the independent corpus) or probe."""
    facts = {}
    for line in (corpus / "attributes.jsonl").read_text().splitlines():
        doc = ImageAttributes.model_validate_json(line)
        facts[doc.image_id] = facts_of(doc)
    items = []
    for name, part in (("items.jsonl", split_of), ("independent.jsonl", independent_half), ("probes.jsonl", None)):
        for line in (corpus / name).read_text().splitlines():
            if line.strip():
                it = json.loads(line)
                it["split"] = part(it["group"]) if part else "probe"
                items.append(it)
    return facts, items


@dataclass
class Tally:
    tp: int = 0  # hallucinated, rejected
    fn: int = 0  # hallucinated, passed
    fp: int = 0  # faithful, rejected
    tn: int = 0  # faithful, passed

    def add(self, hallucinated: bool, rejected: bool) -> None:
        if hallucinated:
            self.tp += rejected
            self.fn += not rejected
        else:
            self.fp += rejected
            self.tn += not rejected

    def row(self) -> str:
        h, f = self.tp + self.fn, self.fp + self.tn
        recall = self.tp / h if h else float("nan")
        fpr = self.fp / f if f else float("nan")
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")
        return f"{h:5d} {f:5d} {recall:8.1%} {fpr:9.1%} {precision:10.1%}"


def evaluate(facts: dict, items: list[dict]) -> list[tuple[dict, list]]:
    return [(it, validate_item(it, facts[it["image_id"]])) for it in items]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--errors", action="store_true", help="list the dev and ind-tune items the validators get wrong")
    args = ap.parse_args(argv)
    facts, items = load()
    results = evaluate(facts, items)
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for it, verdicts in results:
        rejected = any(not v.passed for v in verdicts)
        hallucinated = it["label"] == "hallucinated"
        for split in (it["split"], "all") if it["split"] in PARTS else (it["split"],):
            tallies[(split, it["task_type"])].add(hallucinated, rejected)
            tallies[(split, "overall")].add(hallucinated, rejected)
    corpus = [i for i in items if i["split"] in PARTS]
    print(f"validator corpus: {len(corpus)} items ({sum(i['label'] == 'hallucinated' for i in corpus)} hallucinated, "
          f"{sum(i['label'] == 'faithful' for i in corpus)} faithful); {len(items) - len(corpus)} tuning probes")
    for split in (*PARTS, "all", "probe"):
        print(f"\n{split:8} {'task':12} {'hall':>5} {'faith':>5} {'recall':>8} {'false-rej':>9} {'precision':>10}")
        for task in (*TASKS, "overall"):
            print(f"{'':8} {task:12} {tallies[(split, task)].row()}")
    if args.errors:
        print("\ndev and ind-tune errors:")
        for it, verdicts in results:
            if it["split"] not in ("dev", "ind-tune", "probe"):
                continue
            bad = [v for v in verdicts if not v.passed]
            if bool(bad) != (it["label"] == "hallucinated"):
                what = "MISSED" if not bad else "FALSE REJECT"
                print(f"- {what} {it['id']} ({it['task_type']}, {it['image_id']}): {it.get('note', '')}")
                for v in bad:
                    print(f"    {v.validator}: {v.reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
