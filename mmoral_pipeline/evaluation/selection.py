"""Which closed questions make the benchmark: a set that text alone cannot pass.

Each held-out image offers a pool of closed questions (its generated VQA, the location / counting rules, the
benchmark's own builders). Per image, as in the paper, the target is 5: 3 from the generated VQA and 2 from the
rules. The choice prefers questions whose answer differs between images (`spread` = 1 - the share of the most
frequent training answer of the question's template; at least `MIN_SPREAD`), one question per template per image.

Then it is balanced against the question-wording prior (`evaluation.prior`): swapping questions within an image
until the prior answers `PRIOR_TARGET` (chance, 25 %) of the set right, so a model that has only learnt how
questions are usually answered scores chance. Swaps keep the slot (generated for generated) where they can; where
they cannot, or an image lacks generated questions that vary, the composition moves away from 3 + 2 and the
report says how far. The answer letters are balanced afterwards (`build.assign_letters`), so the most frequent
letter scores chance too.

Pure and deterministic: ties are broken by hashes of the image and question, never by input order.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PER_IMAGE = 5
GENERATED_TARGET = 3  # per image, from the generated (report-based) VQA; the rest from the location / counting rules
MIN_SPREAD = 0.5  # the most frequent answer of a question's template is given for at most half of the images
PRIOR_TARGET = 0.25  # chance with four options
PRIOR_TOLERANCE = 0.05  # the WARN check's band around chance, for the prior and the most frequent letter
MIN_DIMENSION_SHARE = 0.05  # each closed dimension the pools offer keeps at least this share of the set

GENERATED, RULE, BUILDER = "generated", "rule", "builder"


@dataclass(frozen=True)
class Choice:
    """One candidate closed question of one image, as the selection sees it."""

    image_id: str
    key: str  # unique within the image (the question)
    slot: str  # GENERATED, RULE or BUILDER
    template: str  # question with numbers masked (`prior.question_template`)
    spread: float  # 0 = every image has the same answer, near 1 = the answer differs between images
    prior_right: bool | None = None  # does the question-wording prior answer it right? None: no prior fitted
    dims: frozenset[str] = frozenset()  # its dimension labels (Teeth, Patho, HisT, Jaw, SumRec)

    @property
    def varies(self) -> bool:
        return self.spread >= MIN_SPREAD


@dataclass
class SelectionReport:
    images: int = 0
    items: int = 0
    by_slot: dict[str, int] = field(default_factory=dict)
    images_short: dict[str, int] = field(default_factory=dict)  # image -> how many closed questions it has (< 5)
    images_off_target: int = 0  # images whose picks are not 3 generated + 2 rules
    off_target_reasons: dict[str, int] = field(default_factory=dict)
    varying_share: float | None = None  # share of picked questions with spread >= MIN_SPREAD
    dimensions: dict[str, int] = field(default_factory=dict)  # picked questions per dimension label
    dimension_minimum: int = 0
    prior_right_before: int | None = None  # before balancing
    prior_right: int | None = None
    swaps: int = 0
    balanced: bool = False

    @property
    def prior_accuracy(self) -> float | None:
        return None if self.prior_right is None or not self.items else 100.0 * self.prior_right / self.items

    def as_dict(self) -> dict:
        return {"images": self.images, "items": self.items, "by_slot": self.by_slot, "images_short": self.images_short,
                "images_off_target": self.images_off_target, "off_target_reasons": self.off_target_reasons,
                "varying_share": self.varying_share, "dimensions": self.dimensions,
                "dimension_minimum": self.dimension_minimum, "prior_right_before_balancing": self.prior_right_before,
                "prior_right": self.prior_right, "prior_accuracy": self.prior_accuracy, "swaps": self.swaps,
                "balanced": self.balanced}


def _h(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _initial(pool: Sequence[Choice], per_image: int, generated_target: int) -> list[Choice]:
    """3 varying generated, then varying rules, then any varying, then anything; one question per template."""
    order = sorted(pool, key=lambda c: _h(c.image_id, "pick", c.key))
    picks: list[Choice] = []

    def take(accept, limit: int, distinct_template: bool = True) -> None:
        for c in order:
            if len(picks) >= limit:
                return
            if c in picks or not accept(c):
                continue
            if distinct_template and any(p.template == c.template for p in picks):
                continue
            picks.append(c)

    take(lambda c: c.slot == GENERATED and c.varies, generated_target)
    take(lambda c: c.slot == RULE and c.varies, per_image)
    take(lambda c: c.varies, per_image)
    take(lambda c: True, per_image)
    take(lambda c: True, per_image, distinct_template=False)
    return picks


def _n(picks: Sequence[Choice], slot: str) -> int:
    return sum(1 for p in picks if p.slot == slot)


def _dim_counts(picks: Mapping[str, Sequence[Choice]]) -> Counter:
    return Counter(d for cs in picks.values() for c in cs for d in c.dims)


def _keeps_minimum(counts: Counter, out: Choice, new: Choice, minimum: Mapping[str, int]) -> bool:
    """Would swapping `out` for `new` leave every dimension `out` carries (and `new` does not) at or above its
    minimum?"""
    return all(counts[d] - 1 >= minimum.get(d, 0) for d in out.dims - new.dims)


def _cover(picks: dict[str, list[Choice]], pools: Mapping[str, Sequence[Choice]], minimum: Mapping[str, int]) -> None:
    """Swap in questions of under-represented dimensions (most varying first) up to their minimum; with a prior, at
    most PRIOR_TARGET of a dimension's questions are ones it answers right, so no dimension is passed by text alone."""
    for dim in sorted(minimum):
        need = minimum[dim]
        right_quota = round(PRIOR_TARGET * need)
        cands = sorted(((i, c) for i, pool in pools.items() for c in pool if dim in c.dims and c not in picks[i]),
                       key=lambda ic: (not ic[1].varies, -ic[1].spread, _h(ic[0], "cover", ic[1].key)))
        for image_id, new in cands:
            counts = _dim_counts(picks)
            if counts[dim] >= need:
                break
            have = [c for cs in picks.values() for c in cs if dim in c.dims]
            if new.prior_right is not None:
                right = sum(bool(c.prior_right) for c in have)
                if (right >= right_quota) if new.prior_right else (len(have) - right >= need - right_quota):
                    continue
            chosen = picks[image_id]
            if new in chosen or any(p.template == new.template for p in chosen):
                continue
            outs = [p for p in chosen if dim not in p.dims and _keeps_minimum(counts, p, new, minimum)]
            if not outs:
                continue
            out = max(outs, key=lambda p: (min(counts[d] for d in p.dims) if p.dims else 0, _h(image_id, "out", p.key)))
            chosen[chosen.index(out)] = new


def _balance(picks: dict[str, list[Choice]], pools: Mapping[str, Sequence[Choice]], target: int,
             minimum: Mapping[str, int]) -> int:
    """Swap questions within images until the prior is right on `target` of them (or no swap is left), keeping every
    dimension at its minimum; -> swaps."""
    swaps = 0
    while True:
        right = sum(bool(c.prior_right) for cs in picks.values() for c in cs)
        if right == target:
            return swaps
        want = right < target  # swap in questions the prior answers right (True) or wrong (False)
        counts = _dim_counts(picks)
        options = []
        for image_id, chosen in picks.items():
            for out in chosen:
                if bool(out.prior_right) == want:
                    continue
                others = {p.template for p in chosen if p is not out}
                for new in pools[image_id]:
                    if (
                        new in chosen
                        or new.prior_right is None
                        or bool(new.prior_right) != want
                        or new.template in others
                    ):
                        continue
                    if not _keeps_minimum(counts, out, new, minimum):
                        continue
                    rank = (not new.varies, new.slot != out.slot, _h(image_id, out.key, new.key))
                    options.append((rank, image_id, out, new))
        if not options:
            return swaps
        options.sort(key=lambda o: o[0])
        done: set[str] = set()
        for _rank, image_id, out, new in options:
            if image_id in done or right == target:
                continue
            chosen = picks[image_id]
            if out not in chosen or new in chosen or not _keeps_minimum(_dim_counts(picks), out, new, minimum):
                continue
            chosen[chosen.index(out)] = new
            done.add(image_id)
            swaps += 1
            right += 1 if want else -1


def select_closed(pools: Mapping[str, Sequence[Choice]], balance: bool = True, per_image: int = PER_IMAGE,
                  generated_target: int = GENERATED_TARGET) -> tuple[dict[str, list[Choice]], SelectionReport]:
    """image id -> its pool of valid candidates  =>  image id -> the chosen questions, and what the choice did."""
    picks = {i: _initial(pool, per_image, generated_target) for i, pool in sorted(pools.items())}
    initial = {i: list(cs) for i, cs in picks.items()}
    report = SelectionReport(images=len(picks))
    have_prior = any(c.prior_right is not None for pool in pools.values() for c in pool)
    n = sum(len(cs) for cs in picks.values())
    offered = {d for pool in pools.values() for c in pool for d in c.dims}
    report.dimension_minimum = max(1, round(MIN_DIMENSION_SHARE * n)) if n else 0
    minimum = {d: report.dimension_minimum for d in offered}
    _cover(picks, pools, minimum)
    if have_prior:
        report.prior_right_before = sum(bool(c.prior_right) for cs in picks.values() for c in cs)
        if balance:
            report.swaps = _balance(picks, pools, round(PRIOR_TARGET * n), minimum)
            report.balanced = True
        report.prior_right = sum(bool(c.prior_right) for cs in picks.values() for c in cs)
    report.items = n
    report.by_slot = dict(sorted(Counter(c.slot for cs in picks.values() for c in cs).items()))
    report.images_short = {i: len(cs) for i, cs in picks.items() if len(cs) < per_image}
    def on_target(chosen: Sequence[Choice]) -> bool:
        return (len(chosen) == per_image and _n(chosen, GENERATED) == generated_target
                and _n(chosen, RULE) == per_image - generated_target)

    reasons: Counter = Counter()
    for image_id, chosen in picks.items():
        if on_target(chosen):
            continue
        pool = pools[image_id]
        if on_target(initial[image_id]):
            reasons["dimension minimum or balancing against the question-wording prior"] += 1
        elif not any(c.slot == GENERATED for c in pool):
            reasons["no generated VQA"] += 1
        elif sum(1 for c in pool if c.slot == GENERATED and c.varies) < generated_target:
            reasons["fewer than 3 generated questions whose answer varies"] += 1
        else:
            reasons["too few location / counting questions whose answer varies"] += 1
    report.images_off_target = sum(reasons.values())
    report.off_target_reasons = dict(sorted(reasons.items()))
    report.varying_share = (sum(c.varies for cs in picks.values() for c in cs) / n) if n else None
    report.dimensions = dict(sorted(_dim_counts(picks).items()))
    return picks, report


def within_chance(accuracy_pct: float | None) -> bool:
    """Is an accuracy (in %) within PRIOR_TOLERANCE of chance?"""
    return accuracy_pct is not None and abs(accuracy_pct - 100 * PRIOR_TARGET) <= 100 * PRIOR_TOLERANCE
