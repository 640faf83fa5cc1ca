"""One partition's generation: attributes + captions -> reports, VQA, dialogues, attribute tasks.

Plain Python (no Dagster): the asset in `defs/generation.py` and `perf/generation_scale.py` both
call `generate()`. Order: report -> audit (revise when asked) -> validate the final report ->
report-based VQA and dialogue from the accepted report (LLM or offline) -> location and counting
items and attribute tasks (rules). Every candidate runs through the validators claim by claim;
failures become rows of `rejected` with the validator and the offending span.

The audit send-back: a rejected report, VQA reply or dialogue is sent back to the backend once
with the validators' findings (`prompts/repair.j2`, the earlier conversation included, so the
request is cached like any other). The rejected original stays in `rejected`; the reply is
validated as a new candidate whose `extra` names the row it repairs. `GenerationOutput.repairs`
counts requests, accepted and rejected repairs per table.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from mmoral_pipeline import progress
from mmoral_pipeline.domain.attributes import ImageAttributes
from mmoral_pipeline.domain.coverage import join_words, plural_names, sorted_categories
from mmoral_pipeline.domain.taxonomy import ANATOMY, PATHOLOGY, TREATMENTS, Category
from mmoral_pipeline.generation import validators as V
from mmoral_pipeline.generation.facts import Facts, facts_of
from mmoral_pipeline.generation.location_vqa import RULES_VERSION, build_rule_items, verify_rule_item
from mmoral_pipeline.generation.prompts import chat_messages, combined_version, prompt_version, render
from mmoral_pipeline.generation.rows import InstructionItem, item_id
from mmoral_pipeline.generation.schemas import AuditReply, DialogueReply, VQAReply, parse_reply
from mmoral_pipeline.generation.types import ChatBackend, ChatRequest, ChatResponse

GENERATION_CODE_VERSION = "generation-v2"  # bump when this module's logic changes what rows say
RULES_BACKEND = "rules"

# Templates each output depends on (their content hashes feed the assets' code_version).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "reports": ("system", "report", "audit", "report_request", "repair"),
    "vqa_items": ("system", "report", "audit", "vqa_report", "repair"),
    "dialogues": ("system", "report", "audit", "dialogue", "repair"),
    "attribute_tasks": ("attribute_extraction",),
}


def output_code_version(output: str) -> str:
    from mmoral_pipeline.generation.offline import OFFLINE_VERSION

    parts = [GENERATION_CODE_VERSION, OFFLINE_VERSION] + [f"{t}:{prompt_version(t)}" for t in TEMPLATES[output]]
    if output in ("vqa_items", "attribute_tasks"):
        parts.append(RULES_VERSION)
    return combined_version(*parts)


class GenerationSettings(BaseModel):
    """How many items per image, and the sampling parameters sent with every request."""

    n_vqa_closed: int = Field(default=8, ge=0)
    n_vqa_open: int = Field(default=6, ge=0)
    max_loc_closed: int = Field(default=14, ge=0)
    max_loc_open: int = Field(default=14, ge=0)
    max_count: int = Field(default=10, ge=0)
    dialogue_turns: int = Field(default=10, ge=8, le=12)
    attribute_scopes: list[str] = Field(
        default_factory=lambda: ["full", "teeth", "findings", "treatments", "jaw", "quadrant"]
    )
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)  # temperature, max_tokens, seed (sent to the backend)


@dataclass
class ImageInput:
    image_id: str
    partition: str
    attribute_row_hash: str
    attributes: ImageAttributes
    caption: str


@dataclass
class GenerationOutput:
    reports: list[InstructionItem] = field(default_factory=list)
    vqa_items: list[InstructionItem] = field(default_factory=list)
    dialogues: list[InstructionItem] = field(default_factory=list)
    attribute_tasks: list[InstructionItem] = field(default_factory=list)
    rejected: list[InstructionItem] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)
    repairs: Counter = field(default_factory=Counter)  # "<table>_requested" / "_accepted" / "_rejected" / "_errors"
    latency_s: list[float] = field(default_factory=list)

    def candidates(self, table: str) -> int:
        return len(getattr(self, table)) + sum(1 for r in self.rejected if _table_of(r.task_type) == table)


def _table_of(task_type: str) -> str:
    return {"report": "reports", "dialogue": "dialogues", "attribute": "attribute_tasks"}.get(task_type, "vqa_items")


def fallback_caption(attrs: ImageAttributes) -> str:
    """A plain digest used only when no `location_captions` row and no caption renderer exist."""
    try:
        from mmoral_pipeline.attributes.caption import render_caption  # the attributes contributor's renderer

        return render_caption(attrs)
    except ImportError:
        pass
    lines = [f"Image size: {attrs.width}x{attrs.height} pixels.", f"Visible teeth ({len(attrs.teeth)}):"]
    for t in attrs.teeth:
        lines.append(f"- tooth {t.tooth_id} ({t.side}), centre {[round(v) for v in t.center]}, score {t.score:.2f}"
                     + (f", {t.wisdom_status}" if t.wisdom_status else ""))
        for c in t.conditions:
            lines.append(
                f"  - {c.category.value}{f' ({c.type})' if c.type else ''}, box {[round(v) for v in c.bbox]}, score "
                f"{c.score:.2f}"
            )
    for kind in ("bone_loss", "mandibular_canal", "maxillary_sinus"):
        items = getattr(attrs.jaw, kind)
        lines.append(f"{kind.replace('_', ' ').title()} ({len(items)}):")
        lines += [f"- {c.region or c.side or ''} box {[round(v) for v in c.bbox]}, score {c.score:.2f}" for c in items]
    lines.append(
        f"Missing teeth ({sum(len(m.teeth) for m in attrs.missing_teeth)}): "
        f"{[t for m in attrs.missing_teeth for t in m.teeth]}"
    )
    for c in attrs.unknown_tooth_findings:
        lines.append(f"- unknown tooth: {c.category.value} ({c.side or c.region}), score {c.score:.2f}")
    return "\n".join(lines)


class _Ctx:
    """Per-call constants shared by row builders."""

    def __init__(self, backend: ChatBackend, settings: GenerationSettings, run_id: str):
        self.backend = backend
        self.settings = settings
        self.run_id = run_id
        self.params_json = json.dumps(settings.params, sort_keys=True)
        self.versions = {
            t: prompt_version(t)
            for t in ("report", "audit", "vqa_report", "dialogue", "attribute_extraction", "report_request", "repair")
        }
        self.rules_version = combined_version(RULES_VERSION)


def _row(
    ctx: _Ctx,
    img: ImageInput,
    *,
    task_type: str,
    question: str,
    answer: str = "",
    turns=None,
    options=None,
    answer_letter=None,
    dimensions: list[str],
    template: str,
    version: str,
    backend: str,
    model: str,
    resp: ChatResponse | None = None,
    verdicts: list[V.Verdict],
    extra: dict | None = None,
    params: str | None = None,
) -> InstructionItem:
    failed = V.first_failure(verdicts)
    if failed:  # every finding, not only the first: what the send-back reports
        extra = {**(extra or {}), "findings": V.failures(verdicts)}
    # model_construct: every field is built right here with its declared type (and `to_frame`
    # enforces the table schema); validating 1.3M rows again would cost minutes at MMOral scale.
    return InstructionItem.model_construct(
        item_id=item_id(img.image_id, task_type, question, answer, options, turns),
        image_id=img.image_id,
        partition=img.partition,
        task_type=task_type,  # type: ignore[arg-type]
        question=question,
        answer=answer,
        turns=turns,
        options=options,
        answer_letter=answer_letter,
        dimensions=dimensions,
        attribute_row_hash=img.attribute_row_hash,
        prompt_template_id=template,
        prompt_version=version,
        backend=backend,
        model=model,
        params=ctx.params_json if params is None else params,
        request_hash=resp.request_hash if resp else "",
        cache_hit=bool(resp.cache_hit) if resp else False,
        raw_response=resp.text if resp else "",
        run_id=ctx.run_id,
        validators_passed=[v.validator for v in verdicts if v.passed],
        extra=json.dumps(extra or {}, sort_keys=True, default=str),
        rejected_by=failed.validator if failed else None,
        reject_reason=failed.reason if failed else None,
    )


def _place(out: GenerationOutput, table: str, row: InstructionItem) -> None:
    (out.rejected if row.rejected_by else getattr(out, table)).append(row)


def _request(template: str, img: ImageInput, settings: GenerationSettings, schema: str | None = None,
             facts: Facts | None = None, **extra: Any) -> ChatRequest:
    return ChatRequest(
        messages=chat_messages(template, caption=img.caption, **extra),
        params=dict(settings.params),
        json_schema=schema,
        tag=template,
        context={"attributes": img.attributes, "facts": facts, **extra},
    )


def _rng(img: ImageInput, settings: GenerationSettings, salt: str) -> random.Random:
    return random.Random(
        int(hashlib.sha256(f"{img.attribute_row_hash}|{settings.seed}|{salt}".encode()).hexdigest()[:16], 16)
    )


def _failure_row(
    ctx: _Ctx,
    img: ImageInput,
    table_task: str,
    template: str,
    resp: ChatResponse,
    validator: str,
    reason: str,
    dims: list[str],
) -> InstructionItem:
    return _row(
        ctx,
        img,
        task_type=table_task,
        question=f"<{template} request failed>",
        dimensions=dims,
        template=template,
        version=ctx.versions.get(template, ""),
        backend=resp.backend,
        model=resp.model,
        resp=resp,
        verdicts=[V.fail(validator, reason)],
        extra={"attempts": resp.attempts},
    )


def _usage(out: GenerationOutput, responses: list[ChatResponse]) -> None:
    for r in responses:
        if not r.cache_hit:
            out.usage["prompt_tokens"] = out.usage.get("prompt_tokens", 0) + r.usage.prompt_tokens
            out.usage["completion_tokens"] = out.usage.get("completion_tokens", 0) + r.usage.completion_tokens
            out.latency_s.append(r.latency_s)
        out.usage["responses"] = out.usage.get("responses", 0) + 1
        out.usage["cache_hits"] = out.usage.get("cache_hits", 0) + int(r.cache_hit)


def generate(
    images: list[ImageInput], backend: ChatBackend, settings: GenerationSettings | None = None, run_id: str = ""
) -> GenerationOutput:
    settings = settings or GenerationSettings()
    ctx = _Ctx(backend, settings, run_id)
    out = GenerationOutput()
    facts = {img.image_id: facts_of(img.attributes) for img in images}

    # 1. reports
    report_reqs = [_request("report", img, settings, facts=facts[img.image_id]) for img in images]
    report_resps = backend.complete(report_reqs)
    _usage(out, report_resps)
    drafted: list[tuple[ImageInput, ChatResponse]] = []
    for img, resp in zip(images, report_resps, strict=True):
        if resp.error or not resp.text.strip():
            out.rejected.append(
                _failure_row(
                    ctx, img, "report", "report", resp, "backend_error", resp.error or "empty reply", ["Report"]
                )
            )
        else:
            drafted.append((img, resp))

    # 2. audit, revise when asked, validate; send rejected reports back once
    audit_reqs = [
        _request("audit", img, settings, "audit", facts=facts[img.image_id], report=resp.text) for img, resp in drafted
    ]
    audit_resps = backend.complete(audit_reqs) if audit_reqs else []
    _usage(out, audit_resps)
    requests_of = {img.image_id: req for img, req in zip(images, report_reqs, strict=True)}
    checked: list[tuple[ImageInput, InstructionItem, str]] = []
    for (img, resp), aresp in zip(drafted, audit_resps, strict=True):
        progress.note(validated=1)  # validating is long too: the progress lines go on (one unit per image and pass)
        final, audit_info = (
            resp.text.strip(),
            {"audit_request_hash": aresp.request_hash, "audit_cache_hit": aresp.cache_hit},
        )
        if aresp.error and not aresp.text:
            audit_info["audit_error"] = aresp.error
        else:
            try:
                audit = parse_reply("audit", aresp.text)
                assert isinstance(audit, AuditReply)
                audit_info.update(audit_verdict=audit.verdict, revision_log=audit.revision_log)
                if audit.verdict == "revised" and audit.revised_report and audit.revised_report.strip():
                    audit_info["original_report"] = final
                    final = audit.revised_report.strip()
            except ValueError as exc:
                audit_info["audit_error"] = f"invalid_json: {exc}"
        row = _report_row(
            ctx,
            img,
            facts[img.image_id],
            final,
            resp,
            {**audit_info, "audit_template_version": ctx.versions["audit"], "audit_usage": aresp.usage.model_dump()},
        )
        checked.append((img, row, final))
    accepted: list[tuple[ImageInput, str]] = []
    to_repair = [(img, row, final) for img, row, final in checked if row.rejected_by]
    repair_resps = (
        backend.complete(
            [
                _repair_request(requests_of[img.image_id], final, "report", json.loads(row.extra)["findings"])
                for img, row, final in to_repair
            ]
        )
        if to_repair
        else []
    )
    _usage(out, repair_resps)
    repaired = {row.item_id: r for (_, row, _), r in zip(to_repair, repair_resps, strict=True)}
    for img, row, final in checked:
        if not row.rejected_by:
            _place(out, "reports", row)
            accepted.append((img, final))
            continue
        rresp = repaired[row.item_id]
        out.repairs["reports_requested"] += 1
        out.rejected.append(_with_extra(row, repair="requested", repair_request_hash=rresp.request_hash))
        if rresp.error or not rresp.text.strip():
            out.repairs["reports_errors"] += 1
            continue
        fixed = rresp.text.strip()
        row2 = _report_row(
            ctx,
            img,
            facts[img.image_id],
            fixed,
            rresp,
            {"repair_of": row.item_id, "repair_findings": json.loads(row.extra)["findings"]},
        )
        _place(out, "reports", row2)
        out.repairs["reports_rejected" if row2.rejected_by else "reports_accepted"] += 1
        if not row2.rejected_by:
            accepted.append((img, fixed))

    # 3. report-based VQA and dialogues from accepted reports (one batch: more concurrency), then one send-back round
    reqs: list[ChatRequest] = []
    for img, report in accepted:
        f = facts[img.image_id]
        reqs.append(
            _request(
                "vqa_report",
                img,
                settings,
                "vqa",
                facts=f,
                report=report,
                n_closed=settings.n_vqa_closed,
                n_open=settings.n_vqa_open,
            )
        )
        reqs.append(
            _request("dialogue", img, settings, "dialogue", facts=f, report=report, n_turns=settings.dialogue_turns)
        )
    resps = backend.complete(reqs) if reqs else []
    _usage(out, resps)
    sendbacks: list[tuple[str, ImageInput, ChatRequest, list[InstructionItem]]] = []
    for k, (img, _report) in enumerate(accepted):
        progress.note(validated=1)
        f = facts[img.image_id]
        bad = [r for r in _vqa_rows(ctx, out, img, f, resps[2 * k]) if r.rejected_by]
        if bad:
            items = [
                {
                    "kind": "closed" if r.options else "open",
                    "question": r.question,
                    "options": r.options,
                    "answer": r.answer_letter or r.answer,
                }
                for r in bad
            ]
            findings = [f"item {i + 1}: {x}" for i, r in enumerate(bad) for x in json.loads(r.extra)["findings"]]
            sendbacks.append(
                (
                    "vqa_items",
                    img,
                    _repair_request(
                        reqs[2 * k],
                        resps[2 * k].text,
                        "vqa",
                        findings,
                        items=items,
                        existing=[r.question for r in out.vqa_items if r.image_id == img.image_id],
                    ),
                    bad,
                )
            )
        dlg = _dialogue_row(ctx, out, img, f, resps[2 * k + 1])
        if dlg is not None and dlg.rejected_by:
            sendbacks.append(
                (
                    "dialogues",
                    img,
                    _repair_request(
                        reqs[2 * k + 1],
                        resps[2 * k + 1].text,
                        "dialogue",
                        json.loads(dlg.extra)["findings"],
                        n_turns=settings.dialogue_turns,
                    ),
                    [dlg],
                )
            )
    repair_resps = backend.complete([req for _, _, req, _ in sendbacks]) if sendbacks else []
    _usage(out, repair_resps)
    for (table, img, _req, originals), rresp in zip(sendbacks, repair_resps, strict=True):
        out.repairs[f"{table}_requested"] += len(originals)
        for r in originals:
            _mark_repair_requested(out, r, rresp)
        if rresp.error and not rresp.text:
            out.repairs[f"{table}_errors"] += len(originals)
            continue
        f = facts[img.image_id]
        origin = {"repair_of": [r.item_id for r in originals]}
        if table == "vqa_items":
            limits = (sum(1 for r in originals if r.options), sum(1 for r in originals if not r.options))
            rows = _vqa_rows(ctx, out, img, f, rresp, limits=limits, extra=origin)
        else:
            row = _dialogue_row(ctx, out, img, f, rresp, extra=origin)
            rows = [row] if row is not None else []
        for r in rows:
            out.repairs[f"{table}_rejected" if r.rejected_by else f"{table}_accepted"] += 1

    # 4. rules: location / counting items and attribute tasks
    for img in images:
        progress.note(validated=1)
        _rule_rows(ctx, out, img, facts[img.image_id])
        _attribute_rows(ctx, out, img, facts[img.image_id])
    return out


def _report_row(
    ctx: _Ctx, img: ImageInput, f: Facts, text: str, resp: ChatResponse, extra: dict[str, Any]
) -> InstructionItem:
    question = render("report_request", variant=_rng(img, ctx.settings, "report").randrange(60))
    return _row(
        ctx,
        img,
        task_type="report",
        question=question,
        answer=text,
        dimensions=["Report"],
        template="report",
        version=ctx.versions["report"],
        backend=resp.backend,
        model=resp.model,
        resp=resp,
        verdicts=V.validate_report(text, f),
        extra={**extra, **_response_extra(resp)},
    )


def _repair_request(
    original: ChatRequest, reply: str, kind: str, findings: list[str], items: list[dict] | None = None, **context: Any
) -> ChatRequest:
    """The rejected reply sent back once: the same conversation, the reply, and the validators' findings."""
    user = render("repair", kind=kind, findings=findings, items=items or [])
    return ChatRequest(
        messages=[*original.messages, {"role": "assistant", "content": reply}, {"role": "user", "content": user}],
        params=original.params,
        json_schema={"vqa": "vqa", "dialogue": "dialogue"}.get(kind),
        tag="repair",
        context={**original.context, "kind": kind, "findings": findings, "items": items or [], **context},
    )


def _with_extra(row: InstructionItem, **extra: Any) -> InstructionItem:
    return row.model_copy(update={"extra": json.dumps({**json.loads(row.extra), **extra}, sort_keys=True, default=str)})


def _mark_repair_requested(out: GenerationOutput, row: InstructionItem, resp: ChatResponse) -> None:
    """Note the send-back on the rejected row (already in `out.rejected`)."""
    for i, r in enumerate(out.rejected):
        if r is row:
            out.rejected[i] = _with_extra(row, repair="requested", repair_request_hash=resp.request_hash)
            return


def _parsed_reply(ctx: _Ctx, out: GenerationOutput, img: ImageInput, resp: ChatResponse, kind: str, table_task: str,
                  template: str) -> BaseModel | None:
    """The response parsed by its JSON schema, or None after a rejected row (backend error or schema failure)."""
    if resp.error and not resp.text:
        out.rejected.append(_failure_row(ctx, img, table_task, template, resp, "backend_error", resp.error, []))
        return None
    try:
        return parse_reply(kind, resp.text)
    except ValueError as exc:
        out.rejected.append(_failure_row(ctx, img, table_task, template, resp, "json_schema", str(exc), []))
        return None


def _vqa_rows(ctx: _Ctx, out: GenerationOutput, img: ImageInput, f: Facts, resp: ChatResponse,
              limits: tuple[int, int] | None = None, extra: dict[str, Any] | None = None) -> list[InstructionItem]:
    """Rows of one VQA reply (each placed); `limits` caps the closed/open items taken (a repair reply)."""
    reply = _parsed_reply(ctx, out, img, resp, "vqa", "vqa_closed", "vqa_report")
    if reply is None:
        return []
    assert isinstance(reply, VQAReply)
    common = {
        "template": "vqa_report",
        "version": ctx.versions["vqa_report"],
        "backend": resp.backend,
        "model": resp.model,
        "resp": resp,
        "extra": {**_response_extra(resp), **(extra or {})},
    }
    closed, opened = (
        (reply.closed, reply.open) if limits is None else (reply.closed[: limits[0]], reply.open[: limits[1]])
    )
    rows = []
    for q in closed:
        letter = q.answer.strip().strip("()").upper()[:1]
        correct = q.options[V.LETTERS.index(letter)] if letter in V.LETTERS and len(q.options) == 4 else q.answer_text
        verdicts = V.validate_closed(q.question, q.options, letter, f, q.answer_text or None)
        rows.append(_row(ctx, img, task_type="vqa_closed", question=q.question, answer=correct, options=q.options,
                         answer_letter=letter, dimensions=_dims(q.dimensions), verdicts=verdicts, **common))  # type: ignore[arg-type]
    for q in opened:
        verdicts = V.validate_open(q.question, q.answer, f)
        rows.append(_row(ctx, img, task_type="vqa_open", question=q.question, answer=q.answer.strip(),
                         dimensions=_dims(q.dimensions), verdicts=verdicts, **common))  # type: ignore[arg-type]
    for row in rows:
        _place(out, "vqa_items", row)
    return rows


def _response_extra(resp: ChatResponse) -> dict[str, Any]:
    """Per-request facts every row made from that response carries: token usage, attempts, latency."""
    return {"usage": resp.usage.model_dump(), "attempts": resp.attempts, "latency_s": round(resp.latency_s, 3)}


def _dims(labels: list[str]) -> list[str]:
    known = {"teeth": "Teeth", "patho": "Patho", "hist": "HisT", "jaw": "Jaw", "sumrec": "SumRec", "report": "Report"}
    return list(dict.fromkeys(known[x.strip().lower()] for x in labels if x.strip().lower() in known))


def _dialogue_row(ctx: _Ctx, out: GenerationOutput, img: ImageInput, f: Facts, resp: ChatResponse,
                  extra: dict[str, Any] | None = None) -> InstructionItem | None:
    reply = _parsed_reply(ctx, out, img, resp, "dialogue", "dialogue", "dialogue")
    if reply is None:
        return None
    assert isinstance(reply, DialogueReply)
    raw_turns = [{"role": t.role, "content": t.content.strip()} for t in reply.turns]
    role_map = {**{r: "user" for r in V.PATIENT_ROLES}, **{r: "assistant" for r in V.DOCTOR_ROLES}}
    turns = [{"role": role_map.get(t["role"].lower(), t["role"]), "content": t["content"]} for t in raw_turns]
    verdicts = V.validate_dialogue(raw_turns, f)
    dims = ["SumRec"] + _content_dims(f)
    row = _row(ctx, img, task_type="dialogue", question=turns[0]["content"] if turns else "",
               answer=turns[1]["content"] if len(turns) > 1 else "", turns=turns, dimensions=dims, template="dialogue",
               version=ctx.versions["dialogue"], backend=resp.backend, model=resp.model, resp=resp, verdicts=verdicts,
               extra={**_response_extra(resp), **(extra or {})})
    _place(out, "dialogues", row)
    return row


def _content_dims(f: Facts) -> list[str]:
    dims = ["Teeth"]
    if f.pathology():
        dims.append("Patho")
    if f.treatments():
        dims.append("HisT")
    if f.of(Category.BONE_LOSS, *ANATOMY):
        dims.append("Jaw")
    return dims


def _rule_rows(ctx: _Ctx, out: GenerationOutput, img: ImageInput, f: Facts) -> None:
    s = ctx.settings
    for item in build_rule_items(f, _rng(img, s, "rules"), s.max_loc_closed, s.max_loc_open, s.max_count):
        verdicts = [verify_rule_item(item, f), V.no_scores_or_identity(item.question + " " + item.answer)]
        if item.options is not None:
            verdicts.insert(0, V.mcq_form(item.options, item.answer_letter or "", item.answer))
        else:
            verdicts.insert(0, V.open_answer(item.answer, V.JSON_ANSWER_MAX_CHARS))
        _place(
            out,
            "vqa_items",
            _row(
                ctx,
                img,
                task_type=item.task_type,
                question=item.question,
                answer=item.answer,
                options=item.options,
                answer_letter=item.answer_letter,
                dimensions=item.dimensions,
                template=f"rule:{item.builder}",
                version=ctx.rules_version,
                backend=RULES_BACKEND,
                model=RULES_VERSION,
                verdicts=verdicts,
                extra={"fact": item.fact},
                params="{}",
            ),
        )


ATTRIBUTE_MAX_CHARS = 40_000


_SCOPE_CATEGORIES: dict[str, frozenset[Category]] = {
    "full": frozenset(Category),
    "teeth": frozenset({Category.TOOTH}),
    "quadrant": frozenset({Category.TOOTH}),
    "findings": (PATHOLOGY - {Category.MISSING_TOOTH}),
    "treatments": TREATMENTS,
    "jaw": frozenset({Category.BONE_LOSS}) | ANATOMY,
}


def attribute_scope_kinds(scope: str, assessed: frozenset[Category]) -> str | None:
    """None: the scope asks about nothing assessed on this image (no task). '': all of it was assessed.
    Else the assessed kinds the question must name, so an empty list never claims an unlabelled 'none'."""
    wanted = _SCOPE_CATEGORIES[scope]
    have = sorted_categories(wanted & assessed)
    if not have:
        return None
    return "" if wanted <= assessed else join_words(plural_names(have))


def attribute_answer(f: Facts, attrs: ImageAttributes, scope: str, quadrant: int | None = None) -> dict[str, Any]:
    """The structured JSON answer of an attribute-extraction task (boxes in pixels, no scores). Keys of
    categories not assessed on the image are left out: an empty list there would claim 'none'."""
    assessed = frozenset(attrs.assessed)

    def box(b) -> list[int]:
        return [int(round(v)) for v in b]

    def tooth(t) -> dict[str, Any]:
        d: dict[str, Any] = {"tooth_id": t.tooth_id, "box_2d": box(t.bbox)}
        if t.wisdom_status:
            d["wisdom_status"] = t.wisdom_status
        conds = [
            {"category": c.category.value, "box_2d": box(c.bbox), **({"type": c.type} if c.type else {})}
            for c in t.conditions
        ]
        if conds:
            d["conditions"] = conds
        return d

    jaw = {
        k: [
            {"box_2d": box(c.bbox), **({"region": c.region or c.side} if (c.region or c.side) else {})}
            for c in getattr(attrs.jaw, k)
        ]
        for k in ("bone_loss", "mandibular_canal", "maxillary_sinus")
        if Category(k) in assessed
    }
    if scope == "teeth":
        return {"teeth": [{"tooth_id": t.tooth_id, "box_2d": box(t.bbox)} for t in attrs.teeth]}
    if scope == "quadrant":
        return {"quadrant": quadrant, "teeth": [tooth(t) for t in attrs.teeth if t.quadrant == quadrant]}
    if scope in ("findings", "treatments"):
        wanted = (
            (lambda c: c in TREATMENTS)
            if scope == "treatments"
            else (lambda c: c not in TREATMENTS and c not in ANATOMY)
        )
        items = [
            {
                "tooth_id": fd.tooth_id,
                "category": fd.category.value,
                "box_2d": box(fd.bbox),
                **({"type": fd.lesion_type} if fd.lesion_type else {}),
            }
            for fd in f.findings
            if wanted(fd.category) and fd.category != Category.BONE_LOSS
        ]
        d: dict[str, Any] = {scope: items}
        if scope == "findings" and "bone_loss" in jaw:
            d["bone_loss"] = jaw["bone_loss"]
        return d
    if scope == "jaw":
        return jaw
    full: dict[str, Any] = {}
    if Category.TOOTH in assessed:
        full["teeth"] = [tooth(t) for t in attrs.teeth]
    if jaw:
        full["jaw"] = jaw
    if Category.MISSING_TOOTH in assessed:
        full["missing_teeth"] = [{"teeth": m.teeth, "box_2d": box(m.bbox)} for m in attrs.missing_teeth]
    if assessed - {Category.TOOTH, Category.MISSING_TOOTH}:
        full["unknown_tooth_findings"] = [
            {"category": c.category.value, "box_2d": box(c.bbox), "side": c.side or c.region}
            for c in attrs.unknown_tooth_findings
        ]
    return full


_SCOPE_DIMS = {
    "full": ["Teeth", "Patho", "HisT", "Jaw"],
    "teeth": ["Teeth"],
    "findings": ["Teeth", "Patho"],
    "treatments": ["Teeth", "HisT"],
    "jaw": ["Jaw"],
    "quadrant": ["Teeth"],
}


def _attribute_rows(ctx: _Ctx, out: GenerationOutput, img: ImageInput, f: Facts) -> None:
    rng = _rng(img, ctx.settings, "attribute")
    for scope in ctx.settings.attribute_scopes:
        kinds = attribute_scope_kinds(scope, f.assessed)
        if kinds is None:  # nothing of this scope was assessed on the image
            continue
        quadrants = sorted({t.quadrant for t in img.attributes.teeth}) if scope == "quadrant" else [None]
        for q in quadrants:
            variant = rng.randrange(60)  # the template picks phrasing `variant % its number of phrasings`
            question = render("attribute_extraction", scope=scope, variant=variant, quadrant=q, kinds=kinds)
            answer = json.dumps(attribute_answer(f, img.attributes, scope, q), separators=(",", ":"))
            verdicts = V.validate_attribute(answer, f, ATTRIBUTE_MAX_CHARS)
            _place(
                out,
                "attribute_tasks",
                _row(
                    ctx,
                    img,
                    task_type="attribute",
                    question=question,
                    answer=answer,
                    dimensions=_SCOPE_DIMS[scope],
                    template="attribute_extraction",
                    version=ctx.versions["attribute_extraction"],
                    backend=RULES_BACKEND,
                    model=RULES_VERSION,
                    verdicts=verdicts,
                    extra={"scope": scope, "quadrant": q, "variant": variant % 5},
                    params="{}",
                ),
            )


def rejection_stats(out: GenerationOutput) -> dict[str, Any]:
    """Rejections by validator, the rate over all candidates, and the send-back counts."""
    total = sum(len(getattr(out, t)) for t in ("reports", "vqa_items", "dialogues", "attribute_tasks")) + len(
        out.rejected
    )
    by = Counter(r.rejected_by for r in out.rejected)
    return {
        "candidates": total,
        "rejected": len(out.rejected),
        "rate": (len(out.rejected) / total) if total else 0.0,
        "by_validator": dict(by),
        "repairs": dict(out.repairs),
    }
