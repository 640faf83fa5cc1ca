"""The one claim extractor: free text -> what it asserts about teeth, regions and findings.

Every reader of generated text uses this module: the generation validators, the offline judge,
lineage. It knows nothing about any image; comparing claims with an image's attributes is the
validators' job (`generation/validators.py`).

Public API
----------
- `extract(text, context=None) -> Extraction`: claims, tooth mentions, the yes/no particle an
  answer starts with, and tooth-name/number mismatches ("the upper left lateral incisor (23)").
- `extract_claims(text, context=None) -> list[Claim]`: just the claims.
- `claims_from_json(obj) -> list[Claim]`: claims of a structured (attribute-extraction) answer.
- `teeth_in(text) -> list[int]`: the FDI teeth a text names (numbers, ranges, lists, tooth names).
- `categories_in(text) -> set[Category]`: the finding categories a text names, any polarity.
- `report_sections(text) -> list[Section]`: the numbered report sections (and the sub-labels of
  section 1), the one report-section parser.

A `Claim` is `(tooth or region, category, polarity, span)`:

- `tooth` (FDI) or `region` (`Region`: a quadrant, a jaw, a side, a tooth class such as "lower
  molars"); neither for an image-wide claim ("no caries is seen").
- `category` (`Category`), or None for a generic term ("pathology", "restoration", "lesion"):
  `alternatives` then lists the categories any of which makes it true. For a specific term
  `alternatives` holds it too (caries also accepts deep caries).
- `polarity`: "present", "absent", "suspected" (hedged: "suspicious for", "possible", "cannot be
  excluded") or "recommended" (a treatment recommended, not found: "a crown is recommended for 36").
- `span`: character offsets of the clause that makes the claim (`text` holds the clause).
- `lesion_type` (granuloma / cyst / abscess), `count` ("three carious teeth"), `others` ("no
  other caries": about the teeth the text does not name for that finding), `question` (said in a
  question: asked, not asserted).

How it reads: markdown is masked (same offsets), section headings and section labels ("Pathological
Findings:") are dropped, the text is cut into sentences and clauses (contrastive conjunctions,
semicolons, and commas/"and" between two complete statements), and within a clause each finding
term gets the teeth written after it, else the nearest before it, else the subject of the
previous clause or of the `context` (the question an answer replies to). Negation cues scope
forward ("no", "without", "free of") or over their clause ("not", "absent", "ruled out");
hedging cues are adjectives ("possible caries": the next term), forward ("suspicious for",
"may") or backward ("is suspected", "cannot be excluded"). Normal-state words ("intact",
"unrestored", "sound", "healthy", "bone levels within normal limits") are absent-claims.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

from mmoral_pipeline.domain import fdi
from mmoral_pipeline.domain.coverage import is_coverage_statement
from mmoral_pipeline.domain.taxonomy import ANATOMY, JAW_LEVEL, TREATMENTS, Category, normalise_name, unify_category

Polarity = Literal["present", "absent", "suspected", "recommended"]
C = Category

# --- regions ------------------------------------------------------------------------------------

_Q_PERM = {1: range(11, 19), 2: range(21, 29), 3: range(31, 39), 4: range(41, 49)}
_Q_PRIM = {1: range(51, 56), 2: range(61, 66), 3: range(71, 76), 4: range(81, 86)}
_QUADRANT = {("upper", "right"): 1, ("upper", "left"): 2, ("lower", "left"): 3, ("lower", "right"): 4}


@dataclass(frozen=True)
class Region:
    """A named set of teeth (a quadrant, a jaw, a side, a tooth class); `arch` and `side` let it
    match jaw-level findings and findings whose tooth number is unknown."""

    name: str
    teeth: frozenset[int]
    arch: str | None = None  # "upper" / "lower"
    side: str | None = None  # "right" / "left" (patient's side)
    scope: str = "any"  # "teeth": the dentition, not the jaw bone; "jaw": the jaw bone, not the teeth


def region_of(
    arch: str | None = None,
    side: str | None = None,
    positions: Iterable[int] | None = None,
    primary: bool | None = None,
    name: str = "",
) -> Region:
    """Teeth of an arch/side/position class; `primary` None means both dentitions."""
    quads = [q for (a, s), q in _QUADRANT.items() if (arch is None or a == arch) and (side is None or s == side)]
    pos = set(positions) if positions is not None else None
    teeth: set[int] = set()
    for q in quads:
        for table, is_primary in ((_Q_PERM, False), (_Q_PRIM, True)):
            if primary is not None and primary != is_primary:
                continue
            teeth |= {t for t in table[q] if pos is None or t % 10 in pos}
    label = name or " ".join(x for x in (arch, side) if x) or "mouth"
    return Region(label, frozenset(teeth), arch, side)


WHOLE_MOUTH = region_of(name="whole mouth")

# --- claims ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    category: Category | None
    polarity: Polarity
    span: tuple[int, int]
    tooth: int | None = None
    region: Region | None = None
    alternatives: frozenset[Category] = frozenset()
    lesion_type: str | None = None
    count: int | None = None
    others: bool = False
    question: bool = False
    text: str = ""
    definite_only: bool = (
        False  # "no definite caries": only a definite finding contradicts it; "definite caries": only one makes it true
    )
    # not the text's own wording of the finding, so the hedging rule does not apply: read from the question an answer
    # replies to ("Yes."), or the object of an evaluation ("evaluate the lower right periapical area")
    inferred: bool = False
    landmark: bool = False  # a treatment named as where a finding is ("caries under the filling on 16")
    unnumbered: bool = (
        False  # "a lesion in the upper left whose tooth cannot be identified": a finding without a tooth number
    )

    @property
    def categories(self) -> frozenset[Category]:
        """The categories any of which makes the claim true."""
        return self.alternatives or (frozenset({self.category}) if self.category else frozenset())

    @property
    def asserts(self) -> bool:
        """Says a finding is there (definitely or as a suspicion)."""
        return self.polarity in ("present", "suspected")

    @property
    def where(self) -> str:
        if self.tooth is not None:
            return f"tooth {self.tooth}"
        if self.region is not None:
            return f"the {self.region.name}"
        return "the image"

    @property
    def name(self) -> str:
        base = (
            self.category.value.replace("_", " ")
            if self.category
            else "/".join(sorted(c.value for c in self.categories))
        )
        return f"{base} ({self.lesion_type})" if self.lesion_type else base

    def key(self) -> tuple:
        return (
            self.tooth,
            self.region.name if self.region else None,
            self.categories,
            self.polarity,
            self.lesion_type,
            self.count,
        )


@dataclass(frozen=True)
class ToothMention:
    tooth: int  # may be an invalid FDI number when written after "tooth"/"#" ("tooth 19")
    span: tuple[int, int]
    valid: bool = True


@dataclass(frozen=True)
class Extraction:
    """What one text says (shared between callers: extraction is memoised, never mutate it)."""

    text: str
    claims: tuple[Claim, ...] = ()
    teeth: tuple[ToothMention, ...] = ()
    mismatches: tuple[tuple[str, tuple[int, ...], tuple[int, int]], ...] = ()  # (name, numbers, span)
    particle: str | None = None  # "yes" / "no" when the text starts with one (an answer)
    last_teeth: tuple[int, ...] = ()  # the last teeth named (pronoun resolution across texts)
    last_plural: tuple[
        int, ...
    ] = ()  # the teeth of the last plural phrase ("the wisdom teeth", "38 and 48"): what "both" means


# --- lexicon ----------------------------------------------------------------------------------------

PATHO_TOOTH = frozenset({C.CARIES, C.DEEP_CARIES, C.PERIAPICAL_LESION, C.RETAINED_ROOT})
CARIES_ANY = frozenset({C.CARIES, C.DEEP_CARIES})
RESTORATIONS = frozenset({C.FILLING, C.CROWN, C.BRIDGE})
FINDINGS_ANY = (
    frozenset({C.CARIES, C.DEEP_CARIES, C.PERIAPICAL_LESION, C.IMPACTED_TOOTH, C.RETAINED_ROOT, C.BONE_LOSS})
    | TREATMENTS
)
PATHOLOGY_ANY = frozenset(
    {C.CARIES, C.DEEP_CARIES, C.PERIAPICAL_LESION, C.IMPACTED_TOOTH, C.RETAINED_ROOT, C.BONE_LOSS}
)
TOOTH_FINDINGS = (
    frozenset({C.CARIES, C.DEEP_CARIES, C.PERIAPICAL_LESION, C.IMPACTED_TOOTH, C.RETAINED_ROOT}) | TREATMENTS
)
LESION_ANY = frozenset({C.PERIAPICAL_LESION, C.CARIES, C.DEEP_CARIES})


@dataclass(frozen=True)
class Term:
    category: Category | None
    alternatives: frozenset[Category]
    sense: str = "pos"  # "pos" (the finding), "neg" (its absence: "unrestored"), "neutral" (a structure: "bone levels")
    lesion_type: str | None = None

    @property
    def generic(self) -> bool:
        return self.category is None

    @property
    def treatment(self) -> bool:
        return bool(self.alternatives) and self.alternatives <= TREATMENTS

    @property
    def anatomy(self) -> bool:
        return bool(self.alternatives) and self.alternatives <= ANATOMY


def _t(
    cat: Category | None, alts: Iterable[Category] | None = None, sense: str = "pos", lesion: str | None = None
) -> Term:
    if alts is None:
        alts = CARIES_ANY if cat == C.CARIES else {cat}
    return Term(cat, frozenset(alts), sense, lesion)


_ADJ = r"(?:occlusal|mesial|distal|proximal|interproximal|buccal|lingual|palatal|cervical|extensive|large|small|secondary|recurrent|dentinal|early|incipient|active|gross|rampant|and|,)"  # noqa: E501
_LESION_NOUNS = r"(?:lesions?|radiolucenc(?:y|ies)|lucenc(?:y|ies)|patholog(?:y|ies)|pathos[ie]s|rarefactions?|osteitis|inflammation|changes?|involvement|shadows?|infections?|periodontitis|areas?|translucenc(?:y|ies))"  # noqa: E501
_PERIAPICAL = (
    r"(?:periapical|peri-apical|apical|periradicular|pa)"  # "PA radiolucency": periapical, before a lesion noun
)
_APEX = r"(?:the\s+|a\s+|its\s+)?(?:apex|apices|apical\s+(?:third|region|area)|root\s+tips?|tips?\s+of\s+(?:the\s+|its\s+)?roots?|roots?)"  # noqa: E501

# (pattern, term); overlapping matches resolve to the longest (then the earlier entry).
TERMS: list[tuple[str, Term]] = [
    # deep caries
    (
        rf"\bdeep(?:ly|er|est)?(?:\s+{_ADJ})*\s+(?:carious\s+lesions?|caries|carious|cavit(?:y|ies)|decay(?:ed)?)",
        _t(C.DEEP_CARIES),
    ),
    (
        r"\b(?:caries|decay|carious\s+lesions?|cavit(?:y|ies))\s+(?:[a-z]+\s+){0,2}?(?:approaching|reaching|extending\s+(?:in)?to(?:wards)?|involving|close\s+to|near(?:ing)?|into|encroaching\s+(?:on|upon)|in\s+proximity\s+to)\s+(?:the\s+)?pulp\w*",
        _t(C.DEEP_CARIES),
    ),
    (r"\bpulpal\s+(?:involvement|exposure)|\bpulp\s+(?:involvement|exposure)", _t(C.DEEP_CARIES)),
    # caries
    (r"\bcaries[\s-]free\b|\bnon[\s-]?carious\b|\bfree\s+of\s+(?:caries|decay)\b", _t(C.CARIES, sense="neg")),
    (r"\b(?:dental\s+)?caries\b|\bcarious(?:\s+lesions?)?\b|\bdecay(?:ed)?\b|\bdemineraliz\w+", _t(C.CARIES)),
    (r"\b(?<!oral\s)(?<!nasal\s)(?<!pulp\s)(?<!pulpal\s)cavit(?:y|ies)\b(?!\s+prep)", _t(C.CARIES)),
    # periapical lesions
    (rf"\b{_PERIAPICAL}\s+(?:[a-z]+\s+)?abscess(?:es)?\b", _t(C.PERIAPICAL_LESION, lesion="abscess")),
    (rf"\b{_PERIAPICAL}\s+(?:[a-z]+\s+)?granulomas?\b", _t(C.PERIAPICAL_LESION, lesion="granuloma")),
    (rf"\b(?:{_PERIAPICAL}|radicular)\s+(?:[a-z]+\s+)?cysts?\b", _t(C.PERIAPICAL_LESION, lesion="cyst")),
    (rf"\b{_PERIAPICAL}\s+(?:[a-z]+\s+)?{_LESION_NOUNS}\b", _t(C.PERIAPICAL_LESION)),
    (
        rf"\b(?:{_LESION_NOUNS}|radiolucent\s+(?:area|lesion|zone)s?|abscess(?:es)?|granulomas?|cysts?|spots?|dark\s+(?:area|spot)s?)\s+(?:at|around|below|under|beneath|near|of|on|in)\s+{_APEX}\b",
        _t(C.PERIAPICAL_LESION),
    ),
    (r"\babscess(?:es|ed)?\b", _t(C.PERIAPICAL_LESION, lesion="abscess")),
    (r"\bgranulomas?\b", _t(C.PERIAPICAL_LESION, lesion="granuloma")),
    (r"\bcysts?\b", _t(C.PERIAPICAL_LESION, lesion="cyst")),
    (
        r"\b(?:periapical|apical)\s+(?:region|area|tissues?|status|bone|health)\b|\bperiapical(?:ly)?\b",
        _t(C.PERIAPICAL_LESION, sense="neutral"),
    ),
    (r"\binfections?\b", _t(C.PERIAPICAL_LESION)),
    # impacted (erupted is read as a presence word, see _PRESENCE)
    (
        r"\bimpact(?:ed|ion|ions)\b|\bun-?erupted\b|\bpartially\s+erupted\b|\bembedded\b|\bstuck\s+(?:under|in|below|beneath)\b",
        _t(C.IMPACTED_TOOTH),
    ),
    # missing teeth
    (
        (
            r"\bmissing(?:[\s-]+(?:tooth|teeth))?(?:[\s-]+region)?\b|\bedentulous\b|\bedentulism\b|\bagenesis\b|\btooth\s+loss\b|\bextraction\s+(?:site|socket|space)s?\b"
            r"|\bgaps?\b(?!\s+between)|\bused\s+to\s+be\b"
            r"|\b(?:has|have|had)\s+been\s+(?:lost|extracted|removed)\b|\bwas\s+(?:lost|extracted|removed)\b"
        ),
        _t(C.MISSING_TOOTH),
    ),
    # retained roots
    (
        (
            r"\b(?:retained|residual|remaining|leftover|left[\s-]over|broken[\s-]down)\s+roots?\b|\broot\s+(?:remnants?|rests?|fragments?|stumps?|pieces?)\b|\bradix\s+relicta\b"
            r"|\b(?<!at\s)(?<!the\s)(?<!a\s)(?<!its\s)(?<!their\s)(?<!your\s)(?<!his\s)(?<!her\s)(?<!my\s)(?<!of\s)root\s+tips?\b|\bonly\s+(?:a\s+|the\s+)?roots?\s+(?:[a-z]+\s+){0,3}?(?:remains?|is\s+left|left)\b|\broots?\s+(?:is|are)\s+retained\b"
        ),
        _t(C.RETAINED_ROOT),
    ),
    # bone loss
    (
        (
            r"\b(?:(?:alveolar|horizontal|vertical|angular|crestal|marginal|periodontal|mild|moderate|severe|advanced|marked|extensive|significant|slight|minimal|early)\s+)*bone\s+(?:loss|resorption|destruction|defects?)\b|\bloss\s+of\s+(?:[a-z]+\s+)?bone\b|\b(?<!apical\s)periodontitis\b"
            r"|\bperiodontal(?:ly)?\s+(?:disease|breakdown|involvement|compromised|bone\s+loss)\b|\bgum\s+(?:disease|problems?|recession)\b"
            r"|\b(?:reduced|decreased|diminished|lowered|low|receding)\s+(?:alveolar\s+|crestal\s+|marginal\s+)?bone(?:\s+(?:levels?|height|support))?\b"
            r"|\b(?:alveolar\s+|crestal\s+|marginal\s+)?bone\s+(?:levels?|height|support)\s+(?:is|are|appears?)\s+(?:[a-z]+\s+)?(?:reduced|decreased|diminished|lowered)\b"
        ),
        _t(C.BONE_LOSS),
    ),
    (
        (
            r"\b(?:alveolar\s+|crestal\s+|marginal\s+)?bone\s+(?:levels?|height|support)\b|\balveolar\s+(?:bone|crests?)\b|\bcrestal\s+bone\b|\bjaw\s*bones?\b"
            r"|\bperiodontal\s+(?:status|support|condition)\b|\bbone\b"
        ),
        _t(C.BONE_LOSS, sense="neutral"),
    ),
    # root canal treatment
    (
        (
            r"\broot[\s-]canal(?:s)?(?:[\s-](?:treatments?|therapy|therapies|fillings?|obturations?|fill|treated|work|filled))?\b|\broot[\s-](?:canal[\s-])?(?:treated|filled|fillings?)\b"
            r"|\brcts?\b|\bendodontic(?:ally)?[\s-](?:treat\w*|therap\w*|fill\w*|obturat\w*|restored)|\bendodontics\b|\bobturat\w+|\bgutta[\s-]?percha\b|\bpulp(?:ectom|otom)\w+|\bpulp\s+(?:therapy|treatment)\b"
        ),
        _t(C.ROOT_CANAL_TREATMENT),
    ),
    # implants (an implant crown is the implant)
    (
        r"\b(?:dental\s+|osseointegrated\s+|titanium\s+|single\s+)?implants?(?:[\s-](?:supported|retained|borne))?(?:\s+(?:crowns?|restorations?|prosthes[ie]s|fixtures?|bridges?|abutments?))?\b",
        _t(C.IMPLANT),
    ),
    # bridges
    (
        r"\b(?:\w+[\s-]unit\s+)?(?:fixed\s+)?bridges?(?:work)?\b|\bfixed\s+(?:partial\s+)?(?:dentures?|prosthes[ie]s)\b|\bfpds?\b|\bpontics?\b",
        _t(C.BRIDGE),
    ),
    # crowns (not the anatomical crown: "the crown of 36", "in the crown", "crown-root ratio")
    (
        (
            r"\b(?:(?:pfm|porcelain(?:[\s-]fused[\s-]to[\s-]metal)?|zirconia|ceramic|metal[\s-]ceramic|all[\s-]ceramic|gold|full[\s-]coverage|stainless[\s-]steel|prosthetic|artificial|metal)\s+)*crowns?\b"
            r"(?!\s+(?:of\b|portion|region|area|surface|structure|height|lengthening|form|morphology|and\s+root))(?![\s-]root)|\bcrowned\b"
        ),
        _t(C.CROWN),
    ),
    # fillings
    (
        (
            r"\b(?<!root\s)(?<!root-)(?<!canal\s)(?<!canal-)(?<!endodontic\s)fillings?\b|\b(?<!root\s)(?<!root-)(?<!canal\s)filled\b|\bamalgams?\b|\bcomposites?(?:\s+resin)?(?:\s+(?:fillings?|restorations?))?\b"
            r"|\b(?:inlays?|onlays?)\b|\bglass[\s-]ionomer\b|\bgic\b"
        ),
        _t(C.FILLING),
    ),
    # generic terms
    (r"\bunrestored\b|\bvirgin\b", _t(None, RESTORATIONS, sense="neg")),
    (
        r"\brestorations?\b|\brestored\b|\brestorative\s+(?:material|work|treatment|therapy|care)\b|\bprosthe(?:sis|ses|tic\s+(?:work|restorations?|rehabilitation))\b",
        _t(None, RESTORATIONS),
    ),
    (
        r"\b(?:(?:historical|previous|prior|past|existing)\s+)?(?:dental\s+)?(?:treatments?|interventions?|therap(?:y|ies))\b|\bdental\s+work\b",
        _t(None, TREATMENTS),
    ),
    (
        r"\bpatholog(?:y|ies|ic|ical)(?:\s+(?:findings?|changes?|lesions?|processes?|conditions?))?\b|\babnormal(?:it(?:y|ies))?\b|\bdiseases?\b",
        _t(None, PATHOLOGY_ANY),
    ),
    (r"\bfindings?\b", _t(None, FINDINGS_ANY)),
    (r"\blesions?\b|\bradiolucen(?:cy|cies|t\s+(?:area|lesion|zone)s?)\b|\blucenc(?:y|ies)\b", _t(None, LESION_ANY)),
    # anatomy
    (
        r"\b(?:mandibular|inferior\s+alveolar(?:\s+nerve)?|ian|mandibular\s+nerve|nerve)\s+canals?\b|\binferior\s+alveolar\s+nerves?\b",
        _t(C.MANDIBULAR_CANAL),
    ),
    (r"\bmaxillary\s+(?:sinus(?:es)?|antr(?:um|a))\b|\bsinus(?:es)?\b|\bantr(?:um|a|al)\b", _t(C.MAXILLARY_SINUS)),
    (r"\banatomical\s+structures?\b|\banatomy\b", _t(None, ANATOMY)),
]

# --- tooth names and regions ------------------------------------------------------------------------

_ORD = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3}
_KIND = r"(?:central\s+incisors?|lateral\s+incisors?|incisors?|canines?|cuspids?|eye\s*teeth|eye\s*tooth|premolars?|bicuspids?|molars?|wisdom\s+(?:tooth|teeth))"  # noqa: E501
_ARCH_W = r"(?:upper|lower|maxillary|mandibular)"
_SIDE_W = r"(?:left|right)"
_DENT = r"(?:primary|deciduous|baby|milk|permanent|adult)"
_TOOTH_NAME = re.compile(
    rf"\b(?P<quant>both|all(?:\s+(?:four|two|the))?|each|every)?\s*(?:the\s+)?"
    rf"(?P<a1>{_ARCH_W})?\s*(?P<s1>{_SIDE_W})?\s*(?P<a2>{_ARCH_W})?\s*(?P<d1>{_DENT})?\s*"
    rf"(?P<ord>(?:first|second|third|1st|2nd|3rd)(?:\s*(?:,|and|or|&)\s*(?:first|second|third|1st|2nd|3rd))*)?\s*"
    rf"(?P<d2>{_DENT})?\s*(?P<kind>{_KIND})\b(?:\s+(?:in|on)\s+the\s+(?P<a3>upper|lower)?\s*(?P<s3>left|right)(?:\s+(?:side|quadrant))?)?"
)
_ALL_AFTER = re.compile(
    r"\s*[:,(-]?\s*(?:are\s+)?(?:all(?:\s+(?:four|three|two))?|both|each)\b"
)  # "the wisdom teeth: all four ..."
_KIND_HINT = re.compile(r"incisor|canine|cuspid|eye\s*t|molar|wisdom")  # cheap screen before _TOOTH_NAME
_OPPOSING_HINT = re.compile(r"oppos|antagon|counterpart")
# "the lower left one", "the right ones": a tooth name whose kind is the previous name's
_ONE = re.compile(rf"\b(?:the\s+)?(?P<a>{_ARCH_W})?\s*(?P<s>{_SIDE_W})?\s*(?P<one>ones?)\b")
# "the opposing tooth", "its antagonist", "no opposing tooth below it": the tooth of the other arch
_OPPOSING = re.compile(
    r"\b(?:the\s+)?(?:opposing|antagonist(?:ic)?|opposite)\s+(?:tooth|teeth|molar|number)\b"
    r"(?:\s+(?:of|to|for|below|above|beneath|under|over)\s+(?:it|this\s+tooth|that\s+tooth|them))?"
    r"|\b(?:its|their)\s+(?:antagonists?|counterparts?)\b"
)
_PALMER = re.compile(r"\b(?P<a>u|l|upper|lower)\s?(?P<s>r|l|right|left)\s?(?P<p>[1-8])\b")
_REGION = re.compile(
    rf"\b(?P<both>both\s+(?:jaws|arches|sides)|upper\s+and\s+lower\s+(?:jaws?|arches)|maxilla\s+and\s+(?:the\s+)?mandible|bilateral(?:ly)?|on\s+both\s+sides|on\s+either\s+side)\b"
    rf"|\b(?P<quad_n>(?:first|second|third|fourth|1st|2nd|3rd|4th)\s+quadrant|quadrant\s+[1-4]|q[1-4])\b"
    rf"|\b(?P<a>{_ARCH_W})\s+(?P<s>{_SIDE_W})(?:\s+(?:quadrant|region|side|area|segment|posterior|jaw|arch))?\b"
    rf"|\b(?P<s2>{_SIDE_W})\s+(?P<a2>{_ARCH_W})(?!\s+(?:canal|sinus|nerve|antrum))(?:\s+(?:quadrant|region|side|area|segment|jaw|arch))?\b"
    rf"|\b(?P<ant>(?:(?P<a3>{_ARCH_W})\s+)?(?:anterior|front|posterior|back)\s+(?:teeth|tooth|region|segment|area|sextant))\b"
    rf"|\b(?P<arch>upper\s+(?:jaw(?![\s-]*bones?\b)|arch|teeth|dentition)|maxilla|maxillary\s+(?:arch|region|teeth|dentition|ridge|anterior|posterior)|lower\s+(?:jaw(?![\s-]*bones?\b)|arch|teeth|dentition)|mandible|mandibular\s+(?:arch|region|teeth|dentition|ridge|anterior|posterior))\b"
    rf"|\b(?P<arch_adj>upper|lower|maxillary|mandibular)(?=[\s-]+(?:jaw\s+)?(?:bone\s+loss|bone|alveolar|periodontal))"
    rf"|\b(?P<side>(?:on\s+the\s+)?(?:(?<!is\s)(?<!are\s)(?<!was\s)(?<!been\s)(?<!root\s)(?<!roots\s)left(?!\s+(?:at|in|behind|over|from|untreated|alone|open|after)\b)|right)(?:\s+side)?)\b"
    rf"|\b(?P<dent>(?P<dent_w>{_DENT})\s+(?:teeth|dentition))\b"
    rf"|\b(?P<whole>generali[sz]ed|throughout|full[\s-]mouth)\b|\b(?P<jaws>(?:in|of|within)\s+(?:the\s+|both\s+)?jaws)\b"
    rf"|\b(?P<all_teeth>(?:on|of|in|for|across|among)\s+(?:the\s+|all\s+(?:the\s+)?|any\s+(?:of\s+the\s+)?|his\s+|her\s+|your\s+|their\s+|my\s+)?(?:teeth|dentition)|dentition|(?:the\s+)?(?:remaining|other|all\s+other|rest\s+of\s+the)\s+teeth|all\s+(?:the\s+)?teeth)\b"
)

# --- tooth numbers ----------------------------------------------------------------------------------

_NUM = r"(?<![\w.,/])#?\s?(\d{1,2})(?![\w]|[.,]\d|\s*(?:%|mm\b|cm\b|px\b|pixels?\b|years?\b|yrs?\b|y/?o\b|months?\b|days?\b|weeks?\b|degrees?\b|°|x\b|:\d))"  # noqa: E501
_NUMBER = re.compile(_NUM)
_TOOTH_PREFIX = re.compile(r"(?:\b(?:teeth|tooth|nos?\.?|numbers?|fdi|positions?|sites?)\s*#?\s*|#\s*)$")
_COUNT_ADJECTIVES = (
    r"(?:permanent|primary|deciduous|adult|natural|visible|remaining|erupted|present|existing|carious|decayed|impacted|missing|restored|filled|crowned|"
    r"treated|root-filled|endodontically|molar|premolar|anterior|posterior|upper|lower|healthy|sound|intact|definite|definitely|suspected|additional|other|more|"
    r"individual|separate|identifiable|identified|unerupted|wisdom|front|back|total|large|small|occlusal|distinct|clearly|partially|fully|"
    r"maxillary|mandibular|inferior|alveolar|nerve)"
)
_COUNT_AFTER = re.compile(
    rf"^\s+(?:{_COUNT_ADJECTIVES}\s+){{0,2}}"
    r"(?:teeth|tooth|restorations?|fillings?|crowns?|implants?|lesions?|findings?|roots?|canals?|sinuses|bridges?|items?|images?|patients?|quadrants?|units?)\b"
)
_NOT_TOOTH_BEFORE = re.compile(
    r"(?:\b(?:age|aged|total\s+of|out\s+of|of\s+the|score|grade|class|type|stage|size|page|figure|version|approximately|about|than|least|up\s+to|n\s*=|count)\s*)$"
)
_JOIN = re.compile(r"^\s*(?:,|and|or|&|/|\+|as\s+well\s+as|,\s*and|,\s*or)\s*(?:teeth\s+|tooth\s+|#)?$")
_SINGULAR_VERB = re.compile(
    r"\s*\)?\s+(?:also\s+|still\s+|now\s+)?(?:has|is|was|shows|looks|appears|remains|seems|carries|needs|demonstrates|exhibits)\b"
)
_RANGE = re.compile(r"^\s*(?:-|–|—|to|through|thru)\s*(?:tooth\s+)?#?$")


def _expand_range(a: int, b: int) -> list[int] | None:
    """FDI range within a quadrant (31-33) or across the midline of one arch (13-23)."""
    if not (fdi.is_valid_fdi(a) and fdi.is_valid_fdi(b)):
        return None
    qa, qb = a // 10, b // 10
    if qa == qb:
        lo, hi = sorted((a % 10, b % 10))
        return [qa * 10 + p for p in range(lo, hi + 1)]
    pairs = {(1, 2), (2, 1), (4, 3), (3, 4), (5, 6), (6, 5), (8, 7), (7, 8)}
    if (qa, qb) in pairs:
        return [qa * 10 + p for p in range(a % 10, 0, -1)] + [qb * 10 + p for p in range(1, b % 10 + 1)]
    return None


# --- cues ---------------------------------------------------------------------------------------------

_CUES: list[tuple[str, str]] = [
    (
        "noop",
        (
            r"\b(?:tooth\s+)?numbers?\s+(?:is\s+|are\s+)?(?:unclear|unknown|uncertain|not\s+(?:clear|identifiable|determinable|known))\b|\bcannot\s+(?:be\s+)?(?:determined|identified|identify|determine|numbered|assigned|ascertained|established|localized|localised|specified)\b"
            r"|\bcan'?t\s+(?:be\s+)?(?:determined|identified|identify|determine)\b|\bun(?:identified|identifiable)\b|\bnot\s+(?:be\s+)?identifi(?:ed|able)\b"
            r"|\b(?:can(?:no|')?t|could\s*n[o']?t|unable\s+to)\s+(?:\w+\s+)?(?:number|identify|tell|determine|say|pinpoint|be\s+sure|name|specify|see\s+which)\b"
        ),
    ),
    (
        "meta",
        (
            r"(?:\bnot|\bnever|n't|\bneither|\bnor)\s+(?:been\s+)?(?:\w+\s+)?(?:assess(?:ed)?|evaluat(?:ed|e)|examin(?:ed|e)|label(?:l?ed|s)?|annotat(?:ed|e)|analy[sz](?:ed|e)|includ(?:ed|e)|cover(?:ed)?|available|assessable|reported|looked\s+for|in\s+scope|part\s+of\s+(?:this|the))\b"
            r"|\bcannot\s+comment\b|\boutside\s+(?:the|this)\s+scope\b|\bno\s+(?:information|data|labels?)\b|\bwere\s+not\s+part\b"
        ),
    ),
    (
        "hedge_back",
        r"\bcannot\s+be\s+(?:excluded|ruled\s+out|confirmed)\b|\bcan(?:no|')t\s+be\s+(?:excluded|ruled\s+out)\b|\bnot\s+(?:be\s+)?(?:excluded|ruled\s+out)\b",
    ),
    (
        "neg_weak",
        r"\bno\s+(?:definite|definitive|obvious|clear|frank|overt|significant|apparent|major|relevant)\b|\bnothing\s+(?:definite|significant)\b",
    ),
    (
        "sure",
        r"\b(?:definite(?:ly)?|definitive(?:ly)?|confirmed|established|frank|certain(?:ly)?|unequivocal(?:ly)?)\b",
    ),
    # contrast: "a granuloma rather than a cyst", "a granuloma, not a cyst": only the next finding is denied
    ("neg_next", r"\brather\s+than\b|\binstead\s+of\b|(?:(?<=,\s)|(?<=,))(?:but\s+)?not\b(?!\s+only\b)"),
    (
        "neg_fwd",
        r"\bno\s+(?:evidence|signs?|indication)\s+of\b|\bno\b(?!\.)|\bwithout\b|\babsence\s+of\b|\bfree\s+(?:of|from)\b|\bnegative\s+for\b|\bneither\b|\bnor\b|\bnone\s+of\b|\black\s+of\b|\bdevoid\s+of\b|\bnothing\b|\bnot\s+any\b",
    ),
    (
        "neg_all",
        r"\bnot\b(?!\s+only\b)|n't\b|\bnever\b|\bno\s+longer\b|\bcannot\b|\bnil\b|\bruled\s+out\b|\b(?<!be\s)excluded\b|\bnone\b|\bnegative\b",
    ),
    ("absent", r"\babsent\b|\bnot\s+present\b"),
    (
        "hedge_fwd",
        r"\bpossibly\b|\bprobably\b|\bmaybe\b|\bperhaps\b|\bmay\b|\bmight\b|\bcould\b|\bsuspicious\s+(?:for|of)\b|\bsuggestive\s+of\b|\bsuggesting\b|\bconcerning\s+for\b|\bworrisome\s+for\b|\bappears?\s+to\b|\bseems?\s+to\b|\bapparently\b|\bpresumably\b|\bquestionabl[ey]\b|\bsuspect(?:ed)?\s+(?:of|for)\b|\bsuspect\b",
    ),
    (
        "hedge_adj",
        r"\b(?:possible|probable|suspected|questionable|likely|presumed|presumptive|equivocal|indeterminate|apparent|query|suspicious)\b(?=\s+(?:\w+\s+){0,2}?[a-z])",
    ),
    (
        "hedge_back",
        (
            r"\b(?:is|are|was|were|be|remains?)\s+(?:\w+\s+)?(?:suspected|possible|likely|probable|questionable|uncertain|equivocal|suspicious)\b|\b(?:to\s+be|should\s+be|needs?\s+to\s+be|must\s+be|be)\s+confirmed\b"
            r"|\b(?:needs?|requires?|pending)\s+(?:clinical\s+)?(?:confirmation|correlation|verification)\b|\bclinical(?:ly)?\s+(?:correlation|confirmation|verification|check)\b|\bconfirm(?:ed)?\s+clinically\b"
            r"|\bre-?evaluat\w*|\bre-?check\w*|\bchecked\s+clinically\b|\bcheck\s+clinically\b|\bverif(?:y|ied|ication)\b|\bsuspicion\b"
        ),
    ),
    (
        "rec",
        (
            r"\brecommend\w*|\badvis\w*|\bsuggest(?:s|ed|ion|ions)?\b(?!\s+of)|\bconsider\w*|\bshould\b|\bneeds?\b|\bneeded\b|\brequir\w*|\bindicated\b|\bwarrant\w*|\bwould\s+benefit\b|\brefer\w*|\bplan(?:ned|ning)?\b"
            r"|\bevaluat\w*|\bassess(?:ment|ed)?\b|\bconsult\w*|\breview\b|\bmonitor\w*|\bfollow[\s-]?up\b|\bextract(?:ion|ions|ed)?\b|\bremov(?:e|al)\b|\breplace(?:ment)?\b(?!s)|\brestore\b|\btreat\b|\bfill\b"
            r"|\bcandidate\s+for\b|\bsav(?:e|ed|ing)\b|\bprescri\w+|\bproposed\b|\bopinion\b|\bmanagement\b|\bcare\s+for\b|\burgent\b|\bcheck(?:ed|-up)?\b|\bpulp\s+(?:therapy|treatment)\b|\bpulpectomy\b|\bto\s+be\s+(?:done|placed|performed)\b|\bplace(?:ment)?\s+of\b"
        ),
    ),
    (
        "prevent",
        r"\bprevent\w*|\bmonitor(?:ing)?\s+for\b|\bwatch\s+for\b|\bscreen(?:ing)?\s+for\b|\bcheck\s+for\b|\brisk\s+of\b|\bto\s+avoid\b|\bprophyla\w+",
    ),
    ("ruleout", r"\brule\s+out\b|\bto\s+exclude\b|\b(?:evaluat\w+|assess\w*|examin\w+)\s+for\b|\bto\s+confirm\b"),
    (
        "normal",
        r"\b(?:healthy|unremarkable|normal(?:ly)?|intact|sound|disease[\s-]free|within\s+normal\s+limits|wnl|in\s+good\s+(?:condition|health|shape)|preserved|well[\s-]maintained|maintained|adequate|fine|okay|ok|clear|well[\s-]aerated)\b",
    ),
    (
        "presence",
        r"\b(?:present|visible|visuali[sz]ed|seen|identified|identifiable|noted|observed|evident|in\s+place|erupted|remain(?:s|ing)?|detected|depicted|appreciated|traceable|shown|displayed|delineated|there)\b",
    ),
    (
        "others",
        r"\b(?:other|others|rest\s+of\s+the|additional|further|elsewhere|another)\b|\bremaining\b(?=\s+(?!(?:in|on|at|of|and|or|is|are|was|were|with|to)\b)[a-z])",
    ),
    ("only", r"\bonly\b|\bsolely\b|\bjust\b"),
    (
        "partial",
        r"\b(?:most|many|some|several|majority|bulk|mostly|largely)\b",
    ),  # "most of your teeth look fine": not all
    (
        "pron_plural",
        r"^\s*(?:all\s+(?:four|three|two|of\s+them)|both(?:\s+of\s+them)?|each\s+of\s+them|neither(?:\s+of\s+them)?)(?=\s+(?:are|have|were|had|look|appear|seem|show|remain|is|has)\b)",
    ),
    (
        "pron",
        r"\b(?:it|its|this\s+tooth|that\s+tooth|the\s+same\s+tooth|this\s+one|that\s+one|they|them|their|these\s+teeth|those\s+teeth|both\s+of\s+them|the\s+latter|the\s+former)\b|\bthere\b(?=\s*(?:[.,;!?]|$|\s+(?:as\s+well|too|either|also)))",
    ),
    ("for", r"\bfor\b"),
    ("hedge_back", r"\b(?:suspected|possible|questionable|probable)\b"),
]
_CUE_RE = [(kind, re.compile(p)) for kind, p in _CUES]
_TERM_RE = [(re.compile(p), term) for p, term in TERMS]
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
for _i, _w in enumerate(["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], 1):
    _NUMBER_WORDS[f"twenty-{_w}"] = 20 + _i
    _NUMBER_WORDS[f"twenty {_w}"] = 20 + _i
_NUMBER_WORDS.update(
    {
        "thirty": 30,
        "thirty-one": 31,
        "thirty-two": 32,
        "thirty one": 31,
        "thirty two": 32,
        "both": 2,
        "single": 1,
        "a single": 1,
    }
)
_COUNT = re.compile(
    r"\b(?P<n>"
    + "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True))
    + r"|\d{1,2})\s+(?P<adj>(?:"
    + _COUNT_ADJECTIVES
    + r"\s+){0,2})"
    r"(?P<noun>teeth|tooth|restorations|fillings|crowns|implants|lesions|canals|sinuses|bridges|roots)\b"
)
_COUNT_ADJ = {
    "carious": C.CARIES,
    "decayed": C.CARIES,
    "impacted": C.IMPACTED_TOOTH,
    "missing": C.MISSING_TOOTH,
    "filled": C.FILLING,
    "crowned": C.CROWN,
    "restored": C.FILLING,
    "root-filled": C.ROOT_CANAL_TREATMENT,
    "unerupted": C.IMPACTED_TOOTH,
}
_COUNT_NOUN = {
    "restorations": None,
    "fillings": C.FILLING,
    "crowns": C.CROWN,
    "implants": C.IMPLANT,
    "lesions": C.PERIAPICAL_LESION,
    "canals": C.MANDIBULAR_CANAL,
    "sinuses": C.MAXILLARY_SINUS,
    "bridges": C.BRIDGE,
    "roots": C.RETAINED_ROOT,
}
_COORD_GAP = re.compile(r"^[\s,/()]*(?:(?:and|or|some|small|early|mild|slight|minor|possible|also)[\s,/()]+)*$")
_STRONG = re.compile(
    r"\b(?:but|however|whereas|although|though|while|yet)\b|,\s*(?=(?:which|whose)\b)|\b(?P<exc>except(?:\s+for)?|apart\s+from|other\s+than|besides|with\s+the\s+exception\s+of)\b"
)
_WEAK = re.compile(r",|\band\b|\bas\s+well\s+as\b|\bplus\b|\balong\s+with\b|\+")
_PARTICLE = re.compile(r"^\s*(?P<p>yes|no|correct|indeed|nope|right)\b\s*[,.!:;-]")
_SECTION_WORDS = frozenset(
    [
        "general",
        "condition",
        "conditions",
        "pathological",
        "pathology",
        "pathologies",
        "findings",
        "finding",
        "historical",
        "history",
        "interventions",
        "intervention",
        "treatments",
        "treatment",
        "jaw",
        "jaws",
        "jaw-specific",
        "tooth-specific",
        "teeth-specific",
        "specific",
        "teeth",
        "tooth",
        "observations",
        "observation",
        "summary",
        "clinical",
        "recommendations",
        "recommendation",
        "impression",
        "impressions",
        "conclusion",
        "conclusions",
        "dentition",
        "status",
        "other",
        "notes",
        "note",
        "assessment",
        "plan",
        "overview",
        "key",
        "main",
        "radiographic",
        "radiological",
        "report",
        "&",
        "and",
        "of",
        "the",
        "dental",
        "previous",
        "existing",
        "past",
        "prior",
        "restorative",
        "work",
        "anatomy",
        "anatomical",
        "structures",
        "additional",
        "comments",
        "next",
        "steps",
        "advice",
        "suggestions",
        "diagnosis",
        "diagnoses",
        "findings:",
        "radiology",
    ]
)
_REC_LABEL = re.compile(r"\b(?:recommend\w*|plan|advice|next\s+steps|suggestions?|management)\b")
_MIXED_LABEL = re.compile(r"\b(?:summary|impression|findings?|conclusions?|observations?)\b")
_LABEL = re.compile(r"^(?P<lead>\s*(?:[-*•+]\s+|\(?\d+[.)]\s+|\(?[a-z][.)]\s+)?)(?P<label>[^:\n]{1,60}?)\s*:(?!\d)")
_EXISTING = re.compile(
    r"\b(?:has|have|had|with|existing|previous(?:ly)?|prior|present|status\s+post|s/p|treated|restored|crowned|filled|root[\s-]filled|"
    r"in\s+place|carries|carry|carrying|shows?|showing|visible|seen|noted|observed|despite|after|extensively|intact|sound|adequate|"
    r"failing|defective|fractured|loose|satisfactory|overhanging|well[\s-]fitting|good\s+condition|looks?|appears?)\b"
)
_REC_QUESTION = re.compile(
    r"\b(?:recommend\w*|advis\w*|should\s+(?:i|we|be)|what\s+(?:to\s+do|can\s+be\s+done)|next\s+steps?|plan|do\s+i\s+need|need\s+any|would\s+you\s+suggest)\b"
)
# "What treatment ...?" asks for advice unless it asks about the past ("What treatment has 37 had?", "... is present on
# 16?")
_TREATMENT_QUESTION = re.compile(r"\bwhat\s+(?:\w+\s+)?(?:treatments?|management|therapy)\b")
_ADVICE_WORDS = re.compile(
    r"\b(?:needs?|needed|requires?|required|indicated|appropriate|necessary|best|next|would|should|will)\b"
)
_HISTORY_WORDS = re.compile(
    r"\b(?:has|have|had|was|were|did|does|received|done|performed|present|existing|previous|prior|visible|seen|shown)\b"
)
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|approx|vs|dr|mr|mrs|ms|fig|st|no|nos|ca|cf|etc))\.$")

# --- the report-section parser -------------------------------------------------------------------

SECTION_KEYWORDS = {
    1: re.compile(r"teeth|tooth|dental|dentition", re.IGNORECASE),
    2: re.compile(r"jaw|bone|maxill|mandib|periodon", re.IGNORECASE),
    3: re.compile(r"summary|recommend|impression|conclusion|plan", re.IGNORECASE),
}
_SECTION_KIND = {1: "teeth", 2: "jaw", 3: "summary"}
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*\(?(?P<num>[1-9])[ \t]*[.)][ \t]*(?:\*\*|__)?[ \t]*(?P<title>[A-Za-z][^:\n]{1,78}?)[ \t]*(?:\*\*|__)?[ \t]*(?::[ \t]*(?:\*\*|__)?[ \t]*(?P<inline>.*?))?[ \t]*$",  # noqa: E501
    re.MULTILINE,
)
_UNNUMBERED = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+|\*\*|__)(?P<title>[A-Za-z][^:\n*_#]{1,78}?)[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*(?:\*\*|__)?[ \t]*$",  # noqa: E501
    re.MULTILINE,
)
_SUBLABEL = re.compile(
    r"^[ \t]*(?:[-*•][ \t]*)?(?:\*\*|\*|__)?[ \t]*(?P<label>general\s+condition|patholog\w*(?:\s+findings?)?|historical\s+(?:interventions?|treatments?)|treatment\s+history|(?:previous\s+|past\s+|historical\s+)?(?:treatments?|interventions?|restorations?))[ \t]*(?:\*\*|\*|__)?[ \t]*[:\-–][ \t]*(?:\*\*|\*|__)?",  # noqa: E501
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class Section:
    """One report section: `number` 1-3 (None for an unnumbered heading), its heading, its body
    and where the body is in the text. Section 1's sub-labels come as `parts` ("general",
    "pathology", "treatments")."""

    number: int | None
    heading: str
    body: str
    start: int  # body start offset in the text
    end: int
    kind: str | None = None  # "teeth" / "jaw" / "summary" for sections; the sub-label kind for parts
    parts: tuple[Section, ...] = ()


def _sublabel_kind(label: str) -> str:
    low = label.lower()
    if low.startswith("general"):
        return "general"
    if low.startswith("patholog"):
        return "pathology"
    return "treatments"


def _parts(text: str, start: int, end: int) -> tuple[Section, ...]:
    body = text[start:end]
    marks = list(_SUBLABEL.finditer(body))
    out = []
    for k, m in enumerate(marks):
        s, e = start + m.end(), start + (marks[k + 1].start() if k + 1 < len(marks) else len(body))
        out.append(Section(None, m.group("label"), text[s:e], s, e, _sublabel_kind(m.group("label"))))
    return tuple(out)


@lru_cache(maxsize=2048)
def _sections(text: str) -> tuple[Section, ...]:
    heads: list[tuple[int, int, int | None, str, int]] = []  # (heading start, body start, number, title, line end)
    for m in _HEADING.finditer(text):
        n, title = int(m.group("num")), m.group("title").strip(" *_#")
        if (
            n in SECTION_KEYWORDS
            and SECTION_KEYWORDS[n].search(title)
            and len(title.split()) <= 8
            and not re.search(r"\d", title)
            and not (m.group("inline") is None and title.endswith("."))
        ):
            body_start = m.start("inline") if m.group("inline") else m.end()
            heads.append((m.start(), body_start, n, title, m.end()))
    if not heads:
        for m in _UNNUMBERED.finditer(text):
            title = m.group("title").strip()
            n = next((k for k, rx in SECTION_KEYWORDS.items() if rx.search(title)), None)
            if n is not None and len(title.split()) <= 6:
                heads.append((m.start(), m.end(), None, title, m.end()))
    out = []
    for j, (_hs, bs, n, title, _le) in enumerate(heads):
        end = heads[j + 1][0] if j + 1 < len(heads) else len(text)
        kind = (
            _SECTION_KIND.get(n)
            if n
            else next((_SECTION_KIND[k] for k, rx in SECTION_KEYWORDS.items() if rx.search(title)), None)
        )
        body = text[bs:end].strip("\n")
        out.append(Section(n, title, body, bs, end, kind, _parts(text, bs, end) if kind == "teeth" else ()))
    return tuple(out)


def report_sections(text: str) -> list[Section]:
    """The report's sections in order of appearance: numbered headings whose title fits their
    number (1 teeth, 2 jaw, 3 summary/recommendations), e.g. "1. Teeth-Specific Observations",
    "**2) Jaw**", "### 3. Clinical Summary & Recommendations:", or "1) Teeth: ..." with the body
    on the heading line. Unnumbered markdown headings are used only when no numbered one exists."""
    return list(_sections(text or ""))


# --- masking --------------------------------------------------------------------------------------

_MASK_CHARS = str.maketrans({c: " " for c in '*_`~|>{}"“”'} | {"–": "-", "—": "-", "’": "'", "‘": "'", "\t": " "})
_COORDS = re.compile(r"\[[-\d\s.,]+\]|\b(?:box|point)\s?2d\b")


def _mask(text: str) -> tuple[str, list[tuple[int, int, str]]]:
    """Lower-cased text with markup, coordinates and headings blanked (offsets unchanged), and the
    line modes: (start, end, mode) where mode is "rec" under a recommendations label."""
    low = text.lower().translate(_MASK_CHARS)
    low = re.sub(r"#(?!\s?\d)", " ", low)
    low = _COORDS.sub(lambda m: " " * len(m.group()), low)
    chars = list(low)
    for s in _sections(text):
        # blank the heading line up to the body
        line_start = text.rfind("\n", 0, s.start) + 1 if text[s.start - 1 : s.start] != "\n" else s.start
        hs = text.rfind("\n", 0, max(0, s.start - 1)) + 1 if s.start > 0 and text[s.start - 1] == "\n" else line_start
        for i in range(hs, s.start):
            if chars[i] != "\n":
                chars[i] = " "
    modes: list[tuple[int, int, str]] = []
    summary = [(s.start, s.end) for s in _sections(text) if s.kind == "summary"]
    pos = 0
    mode = ""
    for line in "".join(chars).split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if not line.strip():
            mode = ""
            continue
        if not mode and any(a <= start < b for a, b in summary):
            mode = "summary"
        m = _LABEL.match(line)
        if m:
            words = re.findall(r"[a-z&-]+", m.group("label"))
            if words and not re.search(r"\d", m.group("label")) and all(w in _SECTION_WORDS for w in words):
                for i in range(start + m.start("label"), start + m.end()):
                    chars[i] = " "
                mode = (
                    "rec" if _REC_LABEL.search(m.group("label")) and not _MIXED_LABEL.search(m.group("label")) else ""
                )
            elif len(words) <= 6 and not re.search(r"\d", m.group("label")):
                mode = ""
            if not mode and any(a <= start < b for a, b in summary):
                mode = "summary"
        lead = re.match(r"^\s*(?:[-*•+]\s+|\(?\d+[.)]\s+(?=\D))", line)
        if lead:
            for i in range(start, start + lead.end()):
                chars[i] = " "
        modes.append((start, end, mode))
    return "".join(chars), modes


def _sentences(masked: str) -> list[tuple[int, int]]:
    out = []
    for m in re.finditer(r"[^\n]+", masked):
        s0 = m.start()
        line = m.group()
        start = 0
        for b in re.finditer(r"[.!?;]+(?=\s|$)", line):
            if b.group() == "." and _ABBREV.search(line[: b.end()]):
                continue
            out.append((s0 + start, s0 + b.end()))
            start = b.end()
        if line[start:].strip():
            out.append((s0 + start, s0 + len(line)))
    return [(a, b) for a, b in out if masked[a:b].strip(" .;!?")]


# --- tokens ---------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Teeth a piece of text names: explicit teeth, or a region (any tooth of it)."""

    start: int
    end: int
    teeth: tuple[int, ...] = ()
    region: Region | None = None
    each: bool = False  # a plural name with "both"/"all": every tooth of the region
    pronoun: bool = False
    name: str = ""
    area: bool = False  # a jaw/quadrant/side, not teeth: "the left is not seen" says nothing about teeth
    opposing: bool = False  # "the opposing tooth": the other arch's tooth of the tooth being talked about
    singular: bool = False  # a tooth name in the singular ("the molar")


@dataclass
class _Tok:
    kind: str
    start: int
    end: int
    term: Term | None = None
    group: _Group | None = None
    value: Any = None


def _name_region(
    m: re.Match, inherit: tuple[str | None, str | None, bool | None] | None = None
) -> tuple[Region, bool, bool]:
    """(region, singular, fully specified) of a tooth-name match; `inherit` = (arch, side, primary)
    of the name it is coordinated with ("the upper right canine and first molar")."""
    g = m.groupdict()
    arch_w = g.get("a1") or g.get("a2") or g.get("a3")
    arch = {"upper": "upper", "maxillary": "upper", "lower": "lower", "mandibular": "lower"}.get(arch_w or "")
    side = g.get("s1") or g.get("s3")
    kind = re.sub(r"\s+", " ", g["kind"])
    plural = (kind.endswith("s") and not kind.endswith("tooth")) or kind.endswith("teeth")
    dent = g.get("d1") or g.get("d2") or ""
    primary = (
        True if dent in ("primary", "deciduous", "baby", "milk") else False if dent in ("permanent", "adult") else None
    )
    if inherit is not None and arch is None and side is None:
        arch, side = inherit[0], inherit[1]
    if inherit is not None and primary is None and inherit[2]:
        primary = True
    orders = {_ORD[w] for w in re.findall(r"first|second|third|1st|2nd|3rd", g.get("ord") or "")}
    base = kind.rstrip("s") if not kind.endswith("teeth") else kind
    if "wisdom" in base:
        positions, primary = {8}, False
    elif "central" in base:
        positions = {1}
    elif "lateral" in base:
        positions = {2}
    elif "incisor" in base:
        positions = {1, 2}
    elif "canine" in base or "cuspid" in base or "eye" in base:
        positions = {3}
    elif "premolar" in base or "bicuspid" in base:
        positions, primary = ({3 + o for o in orders} if orders else {4, 5}), False
    else:  # molar
        if primary:
            positions = {3 + o for o in orders if o in (1, 2)} or {4, 5}
        else:
            positions = {5 + o for o in orders} if orders else {6, 7, 8}
            if primary is None and orders and orders <= {1, 2}:
                primary = False
    if primary is None and "molar" not in base:
        primary = False  # "lower canine" means the permanent one unless said otherwise
    region = region_of(
        arch,
        side,
        positions,
        primary,
        name=re.sub(r"^(?:the|both|all|each|every)\s+|\s+", " ", m.group().strip()).strip(),
    )
    specific = arch is not None and side is not None and len(region.teeth) == 1
    return region, not plural, specific


def _scan_teeth(s: str, base: int) -> tuple[list[_Tok], list[ToothMention]]:
    """Tooth numbers (with lists and ranges), tooth names and regions in one masked sentence."""
    toks: list[_Tok] = []
    mentions: list[ToothMention] = []
    # numbers
    nums: list[tuple[int, int, int, bool]] = []  # (value, start, end, explicit prefix)
    count_like: set[int] = set()  # starts of numbers followed by a noun they count ("28 teeth")
    for m in _NUMBER.finditer(s):
        v = int(m.group(1))
        before = s[: m.start()]
        explicit = bool(
            _TOOTH_PREFIX.search(before + m.group()[: m.start(1) - m.start()])
        ) or m.group().lstrip().startswith("#")
        if not explicit and _NOT_TOOTH_BEFORE.search(before):
            continue
        if v < 10 and not explicit:
            continue
        if _COUNT_AFTER.match(s[m.end() :]) and not explicit:
            count_like.add(m.start(1))
        nums.append((v, m.start(1), m.end(1), explicit))
    groups: list[list[tuple[int, int, int, bool]]] = []
    ranges: set[tuple[int, int]] = set()
    for n in nums:
        if groups:
            prev = groups[-1][-1]
            gap = s[prev[2] : n[1]]
            if _RANGE.match(gap):
                ranges.add((prev[0], n[0]))
                groups[-1].append(n)
                continue
            # "an implant at 36, and 37 has a filling": a number with a verb in the singular starts a new subject
            if _JOIN.match(gap) and (fdi.is_valid_fdi(n[0]) or n[3]) and not _SINGULAR_VERB.match(s[n[2] :]):
                groups[-1].append(n)
                continue
        groups.append([n])
    # a lone number before the noun it counts is a count, not a tooth ("28 teeth"); in a list it is a tooth ("11, 24, 46
    # | fillings")
    groups = [g for g in groups if not (len(g) == 1 and g[0][1] in count_like and not g[0][3])]
    for grp in groups:
        teeth: list[int] = []
        explicit = any(n[3] for n in grp)
        for i, (v, st, en, _e) in enumerate(grp):
            if i and (grp[i - 1][0], v) in ranges:
                rng = _expand_range(grp[i - 1][0], v)
                if rng:
                    teeth += [t for t in rng if t not in teeth]
                    mentions += [ToothMention(t, (base + st, base + en)) for t in rng]
                    continue
            if fdi.is_valid_fdi(v):
                if v not in teeth:
                    teeth.append(v)
                mentions.append(ToothMention(v, (base + st, base + en)))
            elif explicit or (v >= 10 and len(grp) > 1):
                mentions.append(ToothMention(v, (base + st, base + en), valid=False))
        if teeth:
            toks.append(_Tok("teeth", grp[0][1], grp[-1][2], group=_Group(grp[0][1], grp[-1][2], tuple(teeth))))
    # Palmer-like "LL6", "upper right 8"
    for m in _PALMER.finditer(s):
        a, sd, p = m.group("a")[0], m.group("s")[0], int(m.group("p"))
        if (m.group("a") in ("u", "l") and m.group("s") in ("r", "l")) or len(m.group("a")) > 1:
            q = _QUADRANT[("upper" if a == "u" else "lower", "right" if sd == "r" else "left")]
            t = q * 10 + p
            toks.append(_Tok("teeth", m.start(), m.end(), group=_Group(m.start(), m.end(), (t,))))
            mentions.append(ToothMention(t, (base + m.start(), base + m.end())))
    # tooth names (with coordination: "upper right canine and first molar")
    prev_name: tuple[int, str | None, str | None, bool | None] | None = None
    for m in _TOOTH_NAME.finditer(s) if _KIND_HINT.search(s) else ():
        if not m.group("kind"):
            continue
        g = m.groupdict()
        coordinated = prev_name is not None and re.fullmatch(
            r"[\s,]*(?:and|or|,)[\s,]*(?:the\s+)?", s[prev_name[0] : m.start()]
        )
        region, singular, specific = _name_region(m, prev_name[1:] if coordinated and prev_name else None)
        bare = not any(g.get(k) for k in ("quant", "a1", "a2", "a3", "s1", "s3", "d1", "d2", "ord"))
        if (
            bare
            and singular
            and re.match(
                r"\s+(?:fillings?|crowns?|restorations?|caries|implants?|bridges?|region|area|segment)\b", s[m.end() :]
            )
        ):
            continue
        prev_name = (m.end(), region.arch, region.side, bool(region.teeth) and all(t > 50 for t in region.teeth))
        quant = g.get("quant") or ""
        if specific:
            t = next(iter(region.teeth))
            grp = _Group(m.start(), m.end(), (t,), name=region.name)
            mentions.append(ToothMention(t, (base + m.start(), base + m.end())))
        else:
            each = bool(quant or _ALL_AFTER.match(s, m.end())) and not singular
            grp = _Group(m.start(), m.end(), (), region, each=each, name=region.name, singular=singular)
        toks.append(_Tok("teeth", m.start(), m.end(), group=grp))
    # "the lower left one": the kind of the name before it
    names = [t for t in toks if (t.group.name and t.group.region is not None) or (t.group.name and t.group.teeth)]
    for m in _ONE.finditer(s) if "one" in s else ():
        if not (m.group("a") or m.group("s")):
            continue
        prev = [t for t in names if t.end <= m.start()]
        if not prev:
            continue
        ref = prev[-1].group
        ref_teeth = set(ref.teeth) | (set(ref.region.teeth) if ref.region else set())
        positions = {t % 10 for t in ref_teeth}
        arch = {"upper": "upper", "maxillary": "upper", "lower": "lower", "mandibular": "lower"}.get(m.group("a") or "")
        side = m.group("s")
        ref_arch = (
            ref.region.arch
            if ref.region
            else (fdi.arch(ref.teeth[0]) if ref.teeth and fdi.is_valid_fdi(ref.teeth[0]) else None)
        )
        ref_side = (
            ref.region.side
            if ref.region
            else (fdi.patient_side(ref.teeth[0]) if ref.teeth and fdi.is_valid_fdi(ref.teeth[0]) else None)
        )
        arch, side = arch or ref_arch, side or ref_side
        primary = bool(ref_teeth) and all(t > 50 for t in ref_teeth)
        region = region_of(arch, side, positions, primary, name=m.group().strip())
        singular = m.group("one") == "one"
        if len(region.teeth) == 1:
            t = next(iter(region.teeth))
            grp = _Group(m.start(), m.end(), (t,), name=region.name)
            mentions.append(ToothMention(t, (base + m.start(), base + m.end())))
        else:
            grp = _Group(m.start(), m.end(), (), region, each=not singular, name=region.name, singular=singular)
        toks.append(_Tok("teeth", m.start(), m.end(), group=grp))
    for m in _OPPOSING.finditer(s) if _OPPOSING_HINT.search(s) else ():
        toks.append(_Tok("teeth", m.start(), m.end(), group=_Group(m.start(), m.end(), (), opposing=True)))
    # regions
    for m in _REGION.finditer(s):
        g = m.groupdict()
        if g["both"]:
            w = g["both"]
            if "side" in w or "bilateral" in w or "either" in w:
                regs = [region_of(side="right"), region_of(side="left")]
            else:
                regs = [region_of("upper", name="upper jaw"), region_of("lower", name="lower jaw")]
            for r in regs:
                toks.append(
                    _Tok("teeth", m.start(), m.end(), group=_Group(m.start(), m.end(), (), r, name=r.name, area=True))
                )
            continue
        if g["quad_n"]:
            qn = re.search(r"[1-4]|first|second|third|fourth|1st|2nd|3rd|4th", g["quad_n"]).group()
            q = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}.get(
                qn
            ) or int(qn)
            arch, side = next(k for k, v in _QUADRANT.items() if v == q)
            r = region_of(arch, side)
        elif g["a"] or g["s2"]:
            arch = {"upper": "upper", "maxillary": "upper", "lower": "lower", "mandibular": "lower"}[g["a"] or g["a2"]]
            r = region_of(arch, g["s"] or g["s2"])
        elif g["ant"]:
            arch = {"upper": "upper", "maxillary": "upper", "lower": "lower", "mandibular": "lower"}.get(g["a3"] or "")
            r = region_of(
                arch, None, {1, 2, 3} if re.search(r"anterior|front", g["ant"]) else {4, 5, 6, 7, 8}, name=g["ant"]
            )
        elif g["arch"] or g["arch_adj"]:
            w = g["arch"] or g["arch_adj"]
            r = region_of(
                "upper" if re.match(r"upper|maxill", w) else "lower",
                name="upper jaw" if re.match(r"upper|maxill", w) else "lower jaw",
            )
        elif g["side"]:
            r = region_of(side="left" if "left" in g["side"] else "right")
        elif g["dent"]:
            primary = g["dent_w"] in ("primary", "deciduous", "baby", "milk")
            r = replace(region_of(primary=primary, name=g["dent"]), scope="teeth")
        elif g["all_teeth"]:
            r = replace(WHOLE_MOUTH, name="teeth", scope="teeth")
        elif g["jaws"]:
            r = replace(WHOLE_MOUTH, name="jaws", scope="jaw")
        else:
            r = WHOLE_MOUTH
        toks.append(
            _Tok(
                "teeth",
                m.start(),
                m.end(),
                group=_Group(m.start(), m.end(), (), r, name=r.name, area=r.scope != "teeth"),
            )
        )
    return toks, mentions


def _resolve_overlaps(toks: list[_Tok]) -> list[_Tok]:
    """Longest content token wins where content tokens (teeth, terms) overlap."""
    toks = sorted(toks, key=lambda t: (-(t.end - t.start), t.start))
    kept: list[_Tok] = []
    for t in toks:
        same = [k for k in kept if (k.start, k.end) == (t.start, t.end)]
        if same and t.kind == "teeth" and all(k.kind == "teeth" for k in same):
            kept.append(t)  # "both jaws": one phrase, two regions
        elif all(t.end <= k.start or t.start >= k.end for k in kept):
            kept.append(t)
    return sorted(kept, key=lambda t: t.start)


def _merge_names_and_numbers(toks: list[_Tok], s: str, base: int, mismatches: list) -> list[_Tok]:
    """'the upper left lateral incisor (22)', 'tooth 36 (lower left first molar)': one group; a
    number that fits none of the coordinated names is a mismatch."""
    out: list[_Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "teeth" and i + 1 < len(toks) and toks[i + 1].kind == "teeth":
            u = toks[i + 1]
            gap = s[t.end : u.start]
            names = [x for x in (t, u) if x.group.name]
            numbers = [x for x in (t, u) if not x.group.name and x.group.teeth]
            if (
                len(names) == 1
                and len(numbers) == 1
                and re.fullmatch(r"[\s(),:#=/-]*(?:(?:tooth|teeth|i\.?e\.?|fdi|no\.?)[\s(),:#=/-]*)?", gap)
            ):
                name, num = names[0], numbers[0]
                allowed = set(name.group.teeth) | (set(name.group.region.teeth) if name.group.region else set())
                # coordinated names before this one ("canine and first molar (13, 16)")
                j = len(out) - 1
                k = t.start if name is t else u.start
                while (
                    j >= 0
                    and out[j].kind == "teeth"
                    and out[j].group.name
                    and re.fullmatch(r"[\s,]*(?:and|or|,)[\s,]*(?:the\s+)?", s[out[j].end : k])
                ):
                    allowed |= set(out[j].group.teeth) | (
                        set(out[j].group.region.teeth) if out[j].group.region else set()
                    )
                    k = out[j].start
                    j -= 1
                if not allowed & set(num.group.teeth):
                    mismatches.append(
                        (name.group.name, num.group.teeth, (base + min(t.start, u.start), base + max(t.end, u.end)))
                    )
                g = _Group(min(t.start, u.start), max(t.end, u.end), num.group.teeth, name=name.group.name)
                out.append(_Tok("teeth", g.start, g.end, group=g))
                i += 2
                continue
        out.append(t)
        i += 1
    return out


@lru_cache(maxsize=16384)
def _terms_and_cues(norm: str) -> tuple[tuple[tuple[int, int, Term], ...], tuple[tuple[str, int, int], ...]]:
    """Finding terms and cue words of a sentence whose digits are all 0 (memoised: generated text
    repeats its sentences with other tooth numbers)."""
    terms = [(m.start(), m.end(), term) for rx, term in _TERM_RE for m in rx.finditer(norm)]
    cues: list[tuple[str, int, int]] = []
    taken: list[tuple[int, int]] = []
    hedges: list[tuple[int, int]] = []
    for kind, rx in _CUE_RE:
        for m in rx.finditer(norm):
            if kind in ("neg_fwd", "neg_all", "hedge_back", "hedge_fwd", "hedge_adj", "absent", "sure") and any(
                a <= m.start() < b for a, b in taken
            ):
                continue
            if kind.startswith("hedge") and any(a <= m.start() < b for a, b in hedges):
                continue
            if kind in ("hedge_adj", "normal", "presence", "others", "only", "for", "absent") and any(
                a <= m.start() < b for a, b, _ in terms
            ):
                continue  # inside a term ("restorative treatment", "caries-free"): the term decides
            cues.append((kind, m.start(), m.end()))
            if kind in ("meta", "hedge_back", "noop", "neg_weak", "neg_next"):
                taken.append((m.start(), m.end()))
            if kind.startswith("hedge"):
                hedges.append((m.start(), m.end()))
    return tuple(terms), tuple(cues)


_DIGIT = str.maketrans("123456789", "000000000")


@lru_cache(maxsize=16384)
def _scan(s: str, base: int = 0) -> tuple[tuple[_Tok, ...], tuple[ToothMention, ...], tuple]:
    """Tokens of one masked sentence: teeth, terms (overlaps resolved to the longest) and cues (memoised:
    a sentence is scanned once whatever its context; tokens are shared, so never mutated)."""
    terms, cue_spans = _terms_and_cues(s.translate(_DIGIT))
    content: list[_Tok] = [_Tok("term", a, b, term=term) for a, b, term in terms]
    teeth_toks, mentions = _scan_teeth(s, base)
    content += teeth_toks
    content = _resolve_overlaps(content)
    mismatches: list = []
    content = _merge_names_and_numbers(content, s, base, mismatches)
    kept_mentions = [
        mm
        for mm in mentions
        if not mm.valid or any(t.kind == "teeth" and t.start <= mm.span[0] - base < t.end for t in content)
    ]
    # a pronoun inside a tooth phrase ("the opposing tooth below it") is that phrase's; one after a relative
    # position ("the tooth next to it, 12") names where the other tooth is, not what the clause is about
    beside = [m.span(1) for m in _BESIDE.finditer(s)]
    cues = [
        _Tok("pron", a, b, value="plural") if kind == "pron_plural" else _Tok(kind, a, b)
        for kind, a, b in cue_spans
        if not (
            kind == "pron" and (any(t.kind == "teeth" and t.start <= a < t.end for t in content) or (a, b) in beside)
        )
    ]
    for m in _COUNT.finditer(s):
        if not any(t.kind == "teeth" and t.start <= m.start("n") < t.end for t in content):
            cues.append(_Tok("count", m.start(), m.end(), value=m))
    return tuple(sorted(content + cues, key=lambda t: (t.start, t.end))), tuple(kept_mentions), tuple(mismatches)


# --- clauses ---------------------------------------------------------------------------------------


_LINK_WORDS = frozenset(
    [
        "on",
        "at",
        "in",
        "of",
        "the",
        "a",
        "an",
        "and",
        "or",
        "to",
        "from",
        "between",
        "teeth",
        "tooth",
        "region",
        "regions",
        "area",
        "areas",
        "site",
        "sites",
        "position",
        "positions",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "seen",
        "noted",
        "observed",
        "present",
        "visible",
        "evident",
        "identified",
        "detected",
        "found",
        "located",
        "also",
        "both",
        "spans",
        "span",
        "spanning",
        "extends",
        "extending",
        "involving",
        "affecting",
        "around",
        "below",
        "under",
        "beneath",
        "near",
        "above",
        "apex",
        "apices",
        "root",
        "roots",
        "tip",
        "tips",
        "with",
        "associated",
        "there",
        "which",
        "that",
        "replaces",
        "replacing",
        "replaced",
        "replace",
        "recommended",
        "advised",
        "suggested",
        "planned",
        "needed",
        "required",
        "indicated",
        "considered",
        "for",
        "any",
        "all",
        "each",
        "every",
        "one",
        "two",
        "three",
        "four",
        "quadrant",
        "side",
        "distal",
        "mesial",
        "occlusal",
        "buccal",
        "lingual",
        "aspect",
        "aspects",
        "surface",
        "surfaces",
        "as",
        "well",
        "including",
        "include",
        "includes",
        "within",
        "across",
        "over",
        "into",
        "onto",
        "upper",
        "lower",
        "left",
        "right",
        "jaw",
        "arch",
        "your",
        "his",
        "her",
        "their",
        "my",
        "our",
        "this",
        "these",
        "those",
        "its",
        "it",
        "numbers",
        "number",
        "fdi",
        "no",
    ]
)
_PREDICATES = frozenset(
    {"term", "normal", "count", "presence", "absent", "hedge_adj", "hedge_back", "hedge_fwd", "neg_all", "neg_fwd"}
)


def _complete(toks: Sequence[_Tok]) -> bool:
    """A clause of its own: names teeth (or a pronoun) and says something about them."""
    return any(t.kind in ("teeth", "pron") for t in toks) and any(t.kind in _PREDICATES for t in toks)


def _clauses(s: str, toks: list[_Tok]) -> list[tuple[int, int, list[_Tok], bool]]:
    """Cut a sentence into clauses: (start, end, tokens, ends_with_exception)."""
    bounds: list[tuple[int, int, bool]] = []  # (cut, next start, exception)
    for m in _STRONG.finditer(s):
        if any(t.start <= m.start() < t.end for t in toks if t.kind in ("term", "teeth", "count")):
            continue
        bounds.append((m.start(), m.end(), bool(m.group("exc"))))
    # ':' after a part with neither subject nor predicate ("Not entirely: ...")
    for m in re.finditer(r":", s):
        left = [t for t in toks if t.end <= m.start()]
        if not any(t.kind in ("teeth", "term", "count", "pron") for t in left):
            bounds.append((m.start(), m.end(), False))
    bounds.sort()
    pieces: list[tuple[int, int, bool | str]] = []
    start = 0
    leading_exception = False
    for cut, nxt, exc in bounds:
        lead = exc and not any(t.kind in ("term", "teeth") for t in toks if start <= t.start < cut)
        pieces.append((start, cut, False if lead else exc))
        start = nxt
        if lead:
            # "apart from 25 and the questionable 14, no caries is seen": the excepted phrase, then the rest about the
            # others
            end = min([b[0] for b in bounds if b[0] > start] + [len(s)])
            first_term = min(
                [
                    t.start
                    for t in toks
                    if t.kind in ("term", "neg_fwd", "neg_all", "neg_weak") and start <= t.start < end
                ]
                + [end]
            )
            comma = s.rfind(",", start, first_term)  # the list of excepted teeth may hold commas itself
            if comma >= 0:
                pieces.append((start, comma, "lead_exc"))
                start = comma + 1
            leading_exception = True
    pieces.append((start, len(s), False))
    out: list = []
    for a, b, exc in pieces:
        if exc == "lead_exc":
            out.append((a, b, [t for t in toks if a <= t.start < b], exc))
            continue
        first = len(out)
        sub = [t for t in toks if a <= t.start < b]
        # weak cuts between two complete statements
        cuts = [
            m
            for m in _WEAK.finditer(s, a, b)
            if not any(
                t.start <= m.start() < t.end
                for t in sub
                if t.kind in ("term", "teeth", "count", "normal", "presence", "meta", "rec", "hedge_back")
            )
        ]
        segs: list[tuple[int, int]] = []
        st = a
        for m in cuts:
            segs.append((st, m.start()))
            st = m.end()
        segs.append((st, b))
        cur_a, cur_b = segs[0]
        for sa, sb in segs[1:]:
            left = [t for t in sub if cur_a <= t.start < cur_b]
            right = [t for t in sub if sa <= t.start < sb]
            if _complete(left) and _complete(right):
                out.append((cur_a, cur_b, left, False))
                cur_a, cur_b = sa, sb
            else:
                cur_b = sb
        out.append((cur_a, cur_b, [t for t in sub if cur_a <= t.start < cur_b], exc))
        if len(out) - first > 1 and _shared_rec(out[first][2], out[-1][2]):
            # "endodontic treatment of 22 and a filling for 47 are recommended", "Recommend extraction of 18, a filling
            # for 47"
            out[first:] = [
                (ca, cb, tk if any(t.kind == "rec" for t in tk) else [*tk, _Tok("rec", b, b)], e)
                for ca, cb, tk, e in out[first:]
            ]
    if leading_exception:
        k = next((i for i, c in enumerate(out) if c[3] == "lead_exc"), 0)
        out = out[: k + 1] + [(a, b, tk, "others") for a, b, tk, _e in out[k + 1 :]]
    return out


_BARE_NEG = re.compile(r"\s*[,;:.!]")
_RELATIVE = re.compile(r"\s*(?:which|that|who|whose)\b")
_EXISTS_AFTER = re.compile(
    r"\s+(?:also\s+|well\s+|still\s+)?(?:be\s+)?(?:present|seen|visible|noted|evident|there|exists?|existing|represent\w*|indicat\w*)\b"
)
_EVALUATE = re.compile(
    r"\b(?:evaluat\w*|assess\w*|examin\w*|check|investigat\w*|monitor\w*|review|locate|explore|find|identify)\s+"
    r"(?:(?:the|a|an|this|that|these|those|any|its|their)\s+)?(?:[a-z]+\s+){0,3}$"
)
_BESIDE = re.compile(
    r"\b(?:next\s+to|beside|behind|in\s+front\s+of|adjacent\s+to|mesial\s+to|distal\s+to|opposite)\s+(it|them|this\s+tooth|that\s+tooth)\b"
)
_LANDMARK = re.compile(
    r"\b(?:under|beneath|below|around|underneath|adjacent\s+to|next\s+to|near|along|at\s+the\s+margins?\s+of|margins?\s+of|"
    r"associated\s+with|in\s+contact\s+with)\s+(?:(?:an?|the|its|existing|old|large|previous)\s+)*$"
)


def _opposing(tooth: int) -> int:
    return (
        tooth // 10
        + (3 if tooth // 10 in (1, 5) else 1 if tooth // 10 in (2, 6) else -1 if tooth // 10 in (3, 7) else -3)
    ) * 10 + tooth % 10


_BARE_KINDS = frozenset(
    {
        "teeth",
        "pron",
        "neg_fwd",
        "neg_all",
        "neg_weak",
        "neg_next",
        "hedge_fwd",
        "hedge_adj",
        "hedge_back",
        "presence",
        "absent",
        "only",
        "others",
        "count",
        "sure",
        "noop",
    }
)
_BARE_WORDS = _LINK_WORDS | {
    "not",
    "no",
    "but",
    "yet",
    "still",
    "either",
    "too",
    "so",
    "however",
    "only",
    "s",
    "t",
    "isn",
    "aren",
    "wasn",
    "weren",
    "doesn",
    "don",
    "hasn",
    "haven",
    "can",
    "cannot",
    "clearly",
    "definitely",
    "longer",
    "now",
}


_NORMAL_EXTRA = frozenset(
    {
        "look",
        "looks",
        "appear",
        "appears",
        "seem",
        "seems",
        "otherwise",
        "all",
        "overall",
        "completely",
        "entirely",
        "radiographically",
        "clinically",
        "structurally",
        "good",
        "condition",
        "well",
        "they",
        "them",
        "remain",
        "remains",
        "rest",
        "other",
        "others",
        "quite",
        "perfectly",
        "very",
        "fairly",
        "largely",
        "generally",
        "both",
        "sides",
    }
)


def _bare(s: str, a: int, b: int, toks: Sequence[_Tok], extra: frozenset[str] = frozenset()) -> bool:
    """The clause says nothing beyond its teeth, negation/hedge and presence words ("but not on 37",
    "38 isn't there"): no verb or noun of its own ("it hasn't come through properly", "no sign of a
    problem there") that a negation could be about instead."""
    chars = list(s[a:b])
    for t in toks:
        if t.kind in _BARE_KINDS or (extra and t.kind == "normal"):
            for k in range(max(t.start, a), min(t.end, b)):
                chars[k - a] = " "
    return all(w in _BARE_WORDS or w in extra for w in re.findall(r"[a-z]+", "".join(chars)))


def _shared_rec(first: list[_Tok], last: list[_Tok]) -> bool:
    """A recommendation word that governs a whole list of clauses: before the first clause's finding
    ("Recommend extraction of 18, a filling for 47") or after the last one's ("... and a filling for
    47 are recommended"). One inside a middle item ("a root at 16 that should be removed, crowns on
    13 and 23") is that item's own."""

    def at(toks: list[_Tok], kind: str) -> list[int]:
        return [t.start for t in toks if t.kind == kind]

    lead = at(first, "rec") and (not at(first, "term") or min(at(first, "rec")) < min(at(first, "term")))
    trail = at(last, "rec") and (not at(last, "term") or max(at(last, "rec")) > max(at(last, "term")))
    return bool(lead or trail)


@dataclass
class _Ctx:
    subject: tuple[int, ...] = ()  # teeth an elliptical clause is about (same sentence, or the question answered)
    pron: tuple[int, ...] = ()  # teeth "it" / "they" refer to
    subject_region: Region | None = None
    topic: tuple[Term, ...] = ()  # the sentence's findings, for "... but not on 37"
    topic_rec: bool = False
    plural: tuple[int, ...] = ()  # what "both" / "all four" refer to
    external: bool = True  # subject and pron still hold what the caller passed (not teeth of this sentence)
    used: bool = False  # a value from outside the sentence was read: the claims depend on the context

    def ref(self, name: str) -> Any:
        """A context field, noting when the claims come to depend on the sentence's context."""
        v = getattr(self, name)
        if v and (self.external or name == "plural"):
            self.used = True
        return v


def _claims_of_clause(
    s: str,
    base: int,
    a: int,
    b: int,
    toks: list[_Tok],
    ctx: _Ctx,
    mode: str,
    question: bool,
    exception: bool,
    text: str,
) -> tuple[list[Claim], tuple[int, ...]]:
    span = (base + a, base + b)
    clause_text = text[span[0] : span[1]].strip()
    kinds = {t.kind for t in toks}
    if "meta" in kinds:
        return [], ()
    terms = [t for t in toks if t.kind == "term"]
    specific = [t for t in terms if not t.term.generic and t.term.sense != "neutral"]
    nonanat = [t for t in terms if not t.term.anatomy]
    drop: set[int] = set()
    for t in terms:
        if t.term.generic and any(x.term.alternatives <= t.term.alternatives for x in specific):
            drop.add(
                id(t)
            )  # "pathological findings include caries": the generic word is the heading of the specific one
        if t.term.anatomy and any(
            not x.term.anatomy and not x.term.generic and x.term.sense != "neutral" for x in nonanat
        ):
            drop.add(id(t))  # "caries near the mandibular canal": the canal is a landmark
        if t.term.sense == "neutral" and "normal" not in kinds:
            drop.add(id(t))
        if t.term.sense == "neutral" and specific:
            drop.add(id(t))
    anatomy_named = any(t.term.anatomy and not t.term.generic for t in terms)
    neutral = [t for t in terms if t.term.sense == "neutral"]
    specific = [t for t in specific if not t.term.anatomy]
    narrowed: dict[int, _Tok] = {}
    for t in terms:
        if t.term.generic and not specific and anatomy_named:
            drop.add(id(t))  # "no sinus pathology": about the sinus, which the attributes only see or not
        elif (
            t.term.generic and not specific and neutral
        ):  # "bone levels: no abnormality": the generic word is about the bone
            narrowed[id(t)] = replace(
                t,
                term=replace(
                    t.term, alternatives=t.term.alternatives & neutral[0].term.alternatives or t.term.alternatives
                ),
            )
    toks = [narrowed.get(id(t), t) for t in toks if id(t) not in drop]
    idx = {id(t): i for i, t in enumerate(toks)}

    def gap(i: int, j: int) -> str:
        return s[toks[i].end : toks[j].start]

    terms_i = [i for i, t in enumerate(toks) if t.kind == "term"]
    # hedging
    hedged: set[int] = set()
    for i, t in enumerate(toks):
        if t.kind == "hedge_fwd":
            after = [j for j in terms_i if j > i]
            hedged |= set(after)
            if after:
                alts = toks[after[0]].term.alternatives
                hedged |= {j for j in terms_i if j < i and (toks[j].term.alternatives & alts or toks[j].term.generic)}
            elif _EXISTS_AFTER.match(
                s, t.end
            ):  # "early bone loss may be present in the mandible" (not "... could be removed")
                hedged |= {j for j in terms_i if j < i}
        elif t.kind == "hedge_back":
            # "... is suspected", "(re-evaluate)": the findings before it, from the first already hedged one on
            # ("deep caries 17, with possible periapical lesion (re-evaluate)": the deep caries stays definite)
            prior = [j for j in terms_i if j < i]
            already = [j for j in prior if j in hedged]
            hedged |= {j for j in prior if not already or j >= already[0]} or {j for j in terms_i if j > i}
        elif t.kind == "hedge_adj":
            after = [j for j in terms_i if j > i]
            if not after:
                hedged |= {j for j in terms_i if j < i}
                continue
            hedged.add(after[0])
            for prev, nxt in itertools.pairwise(after):
                if not _COORD_GAP.match(gap(prev, nxt)):
                    break
                hedged.add(nxt)
    # certainty ("definite caries on 25", "36 definitely has caries"): only a definite finding makes it true
    sure: set[int] = set()
    for i, t in enumerate(toks):
        if t.kind == "sure":
            sure |= set([j for j in terms_i if j > i][:1] or [j for j in terms_i if j < i][-1:])
    # negation
    negated: set[int] = set()
    weak: set[int] = set()
    neg_all = any(t.kind == "neg_all" for t in toks)
    for i, t in enumerate(toks):
        if t.kind == "neg_next":
            after = [j for j in terms_i if j > i]
            for k, j in enumerate(after):
                if k and not _COORD_GAP.match(gap(after[k - 1], j)):
                    break
                negated.add(j)
        if t.kind in ("neg_fwd", "neg_weak") and not _BARE_NEG.match(
            s, t.end
        ):  # "Nothing, the tooth is missing": no object
            negated |= {j for j in terms_i if j > i}
        if t.kind == "neg_weak":
            weak |= {j for j in terms_i if j > i}
    if neg_all:
        negated |= set(terms_i)
    absent_cue = any(t.kind == "absent" for t in toks)
    if absent_cue and any(not toks[j].term.anatomy and toks[j].term.alternatives != {C.MISSING_TOOTH} for j in terms_i):
        negated |= {j for j in terms_i if toks[j].term.alternatives != {C.MISSING_TOOTH}}
        absent_cue = False
    rec_clause = mode == "rec" or any(t.kind == "rec" for t in toks)
    others = any(t.kind == "others" for t in toks) or bool(exception)
    only_at = [t.start for t in toks if t.kind == "only"]
    unnumbered = "noop" in kinds
    relative = _RELATIVE.match(s, a) is not None
    partial = "partial" in kinds
    only = bool(only_at)
    prevent_at = [t.start for t in toks if t.kind == "prevent"]
    ruleout_at = [t.start for t in toks if t.kind == "ruleout"]
    groups = [(i, t) for i, t in enumerate(toks) if t.kind in ("teeth", "pron")]

    def resolve(t: _Tok) -> list[_Group]:
        if t.kind == "pron" and t.value == "plural":  # "Both are impacted." after "the lower wisdom teeth"
            return [_Group(t.start, t.end, ctx.ref("plural"), pronoun=True)] if ctx.ref("plural") else []
        if t.kind == "pron":
            before = [
                g
                for g in toks[: idx[id(t)]]
                if g.kind == "teeth" and (g.group.teeth or (g.group.region is not None and not g.group.area))
            ]
            if before and before[-1].group.teeth:  # "tooth 44 has a cavity under its filling"
                return [_Group(t.start, t.end, before[-1].group.teeth, pronoun=True)]
            if before:  # "caries affecting three second molars, one of them deep": the molars, not an earlier tooth
                return [before[-1].group]
            if ctx.ref("pron"):
                return [_Group(t.start, t.end, ctx.pron, pronoun=True)]
            if ctx.subject_region:
                return [_Group(t.start, t.end, (), ctx.subject_region, pronoun=True)]
            return []
        g = t.group
        if g.opposing:  # the antagonist of the tooth named before it (in the clause, else the one talked about)
            before = [x for x in toks[: idx[id(t)]] if x.kind == "teeth" and x.group.teeth and not x.group.opposing]
            ref = before[-1].group.teeth if before else (ctx.ref("pron") or ctx.ref("subject"))
            opp = tuple(_opposing(x) for x in ref if fdi.is_valid_fdi(x))
            return [_Group(t.start, t.end, opp, pronoun=True)] if opp else []
        known = (
            (ctx.ref("pron") or ctx.ref("subject"))
            if g.singular and g.region is not None and g.region.arch is None and g.region.side is None
            else ()
        )
        if (
            g.singular
            and g.region is not None
            and g.region.arch is None
            and g.region.side is None
            and known
            and set(known) <= g.region.teeth
        ):
            # "What is at 36? A root-treated molar.": an unlocalised tooth name is the tooth being talked about
            return [_Group(t.start, t.end, known, pronoun=True)]
        return [g]

    def linked(after: int, grps: list[_Tok]) -> list[_Tok]:
        """The groups written after a term that belong to it: a chain of prepositions and lists
        ("on teeth 36 and 37", "in the region of 15"), up to a new noun phrase."""
        out, pos = [], toks[after].end
        in_parens = s.count("(", a, toks[after].start) > s.count(")", a, toks[after].start)
        for g in grps:
            gap_text = s[pos : g.start]
            words = re.findall(r"[a-z]+", gap_text)
            if any(w not in _LINK_WORDS for w in words):
                break
            if in_parens and ")" in gap_text:
                break  # "caries 16 (under filling) and 46": a term in parentheses belongs to what they follow
            if (
                out
                and re.search(r"\band\b|,", gap_text)
                and re.match(
                    r"\s+(?:is|are|was|were|has|have|had|shows?|looks?|seems?|appears?|remains?)\b", s[g.end :]
                )
            ):
                break  # a new subject with its own verb
            out.append(g)
            pos = g.end
        return out

    def teeth_for(i: int) -> list[_Group]:
        nxt = next((j for j in terms_i if j > i), len(toks))
        post = linked(i, [g for j, g in groups if i < j < nxt])
        if post:
            return [x for g in post for x in resolve(g)]
        if relative and not [g for j, g in groups if j < i] and ctx.ref("subject"):
            # "a crown on 21, which also had a root canal, an implant at 35": the tooth the relative clause is about
            return [_Group(0, 0, ctx.subject, pronoun=True)]
        k = i
        while True:  # "a crowned and root-filled 21": coordinated terms share the teeth after the last one
            nxt_term = next((j for j in terms_i if j > k), None)
            if nxt_term is None or not re.fullmatch(r"[\s,/]*(?:and|or|&|,)?[\s,/]*(?:a|an|the)?\s*", gap(k, nxt_term)):
                break
            k = nxt_term
            after = next((j for j in terms_i if j > k), len(toks))
            shared = linked(k, [g for j, g in groups if k < j < after])
            if shared:
                return [x for g in shared for x in resolve(g)]
        pre = [g for j, g in groups if j < i]
        if pre:
            # the nearest group before, with the groups coordinated with it
            last = [pre[-1]]
            k = len(pre) - 2
            while k >= 0 and re.fullmatch(r"[\s,]*(?:and|or|&|/|,)?[\s,]*", s[pre[k].end : last[0].start]):
                last.insert(0, pre[k])
                k -= 1
            return [x for g in last for x in resolve(g)]
        later = [g for j, g in groups if j > i]
        if later:
            first_j = next(j for j, g in groups if j > i)
            nxt2 = next((j for j in terms_i if j > first_j), len(toks))
            return [x for j, g in groups if first_j <= j < nxt2 for x in resolve(g)]
        if ctx.ref("subject"):
            return [_Group(0, 0, ctx.subject, pronoun=True)]
        if ctx.subject_region:
            return [_Group(0, 0, (), ctx.subject_region, pronoun=True)]
        return []

    claims: list[Claim] = []
    named: list[int] = []

    def emit(
        term: Term,
        pol: Polarity,
        grps: list[_Group],
        count: int | None = None,
        oth: bool = False,
        definite_only: bool = False,
        landmark: bool = False,
        inferred: bool = False,
    ) -> None:
        def one(tooth: int | None, region: Region | None) -> None:
            alts = term.alternatives
            if (
                term.generic and region is not None and region.scope != "any"
            ):  # "no pathology on the teeth": not the jaw bone
                alts = (alts - JAW_LEVEL if region.scope == "teeth" else alts & JAW_LEVEL) or alts
            claims.append(
                Claim(
                    term.category,
                    pol,
                    span,
                    tooth,
                    region,
                    alts,
                    term.lesion_type,
                    count,
                    oth,
                    question,
                    clause_text,
                    definite_only,
                    inferred=inferred,
                    landmark=landmark,
                    unnumbered=unnumbered and tooth is None,
                )
            )

        if not grps:
            one(None, None)
        for g in grps:
            if g.teeth:
                for tooth in g.teeth:
                    one(tooth, None)
            elif g.region is not None:
                if g.each:
                    for tooth in sorted(g.region.teeth):
                        one(tooth, None)
                else:
                    one(None, g.region)

    # counts
    counted: list[tuple[int, int]] = []
    if not rec_clause and not others:
        for i, t in enumerate(toks):
            if t.kind != "count":
                continue
            m = t.value
            n = _NUMBER_WORDS.get(m.group("n")) if not m.group("n").isdigit() else int(m.group("n"))
            if n is None:
                continue
            noun = m.group("noun")
            adj = m.group("adj").split()
            cat: Category | None = next((_COUNT_ADJ[w] for w in adj if w in _COUNT_ADJ), None)
            if noun in _COUNT_NOUN:
                cat = _COUNT_NOUN[noun] or C.FILLING
            before = [toks[j] for j in terms_i if j < i and re.fullmatch(r"\s*\(\s*", s[toks[j].end : t.start])]
            if cat is None and noun in ("teeth", "tooth") and before and before[-1].term.category:
                cat = before[-1].term.category  # "fillings (2 teeth)"
            if cat is None and noun in ("teeth", "tooth"):
                later = [toks[j] for j in terms_i if j > i]
                # "three teeth with caries", "two teeth need fillings"; not "28 teeth and 37 is missing"
                if (
                    later
                    and later[0].term.category
                    and re.match(
                        r"\s*(?:with|show(?:s|ing)?|have|having|has|need(?:s|ing)?|are|were|is|that|which|presenting|affected\s+by)\b[^\d]*$",
                        s[t.end : later[0].start],
                    )
                    and " and " not in s[t.end : later[0].start]
                ):
                    cat = later[0].term.category
                else:
                    cat = C.TOOTH
            if cat is None or (n == 1 and cat not in ANATOMY):
                continue
            if m.group("n") == "both" and (cat not in ANATOMY or re.match(r"\s+and\b", s[t.end :])):
                continue  # "both mandibular canals and maxillary sinuses": both kinds, not both sides
            counted.append((t.start, t.end))
            if cat in ANATOMY and n == 2:
                for side in ("right", "left"):
                    emit(_t(cat), "present", [_Group(0, 0, (), region_of(side=side), name=side)])
                continue
            term = _t(cat)
            region = next(
                (
                    x.group.region
                    for x in toks
                    if x.kind == "teeth" and x.group.region is not None and t.start <= x.start < t.end
                ),
                None,
            )
            definite = bool(re.search(r"\bdefinite(?:ly)?\b", m.group("adj"))) or any(
                x.kind == "sure" and x.end <= t.start for x in toks
            )
            claims.append(
                Claim(
                    cat,
                    "present",
                    span,
                    None,
                    region,
                    term.alternatives,
                    None,
                    n,
                    False,
                    question,
                    clause_text,
                    definite,
                )
            )
    # subject-only clauses
    if not terms_i:
        grps = [x for _, g in groups for x in resolve(g)]
        if not grps:
            return claims, ()
        elliptic_neg = neg_all or any(t.kind == "neg_fwd" for t in toks)
        elliptic_hedge = any(t.kind in ("hedge_adj", "hedge_fwd") for t in toks)
        bare = _bare(s, a, b, toks)
        if (
            ctx.topic
            and not ctx.topic_rec
            and not rec_clause
            and (elliptic_neg or elliptic_hedge)
            and bare
            and not any(t.kind in ("normal", "presence", "absent") for t in toks)
        ):
            # "caries on 36 but not on 37", "... and one suspected (46)": the sentence's topic
            for term in ctx.topic:
                emit(term, "absent" if elliptic_neg else "suspected", grps)
            return claims, tuple(t for g in grps for t in g.teeth)
        named = [t for g in grps for t in g.teeth]
        grps = [g for g in grps if not g.area]
        if not grps:
            return claims, tuple(named)
        neg = neg_all or any(t.kind == "neg_fwd" and t.start < max(g.end for g in grps) + 40 for t in toks)
        normal_words = [s[t.start : t.end] for t in toks if t.kind == "normal"]
        if normal_words and not neg and not rec_clause and not partial and _bare(s, a, b, toks, _NORMAL_EXTRA):
            cats = set()
            for w in normal_words:
                if w in ("intact", "sound"):
                    cats |= {C.CARIES, C.DEEP_CARIES}
                    cats |= set(RESTORATIONS)
                elif w not in (
                    "clear",
                    "well-aerated",
                    "well aerated",
                    "adequate",
                    "preserved",
                    "maintained",
                    "well-maintained",
                    "well maintained",
                ):
                    cats |= set(PATHO_TOOTH)
            for cat in sorted(cats, key=lambda c: c.value):
                emit(_t(cat, {cat} if cat != C.CARIES else CARIES_ANY), "absent", grps, oth=others)
            if any(s[t.start : t.end] == "erupted" for t in toks if t.kind == "presence"):  # "have erupted normally"
                emit(_t(C.IMPACTED_TOOTH), "absent", grps, oth=others)
        elif absent_cue and not rec_clause:
            emit(_t(C.TOOTH), "absent", grps, oth=others)
        elif any(t.kind == "presence" for t in toks) and not rec_clause:
            pres_words = [s[t.start : t.end] for t in toks if t.kind == "presence"]
            if neg:
                # "38 is not present", "no upper third molars are seen"; not "no sign of a problem there"
                if ("erupted" not in pres_words or len(pres_words) > 1) and bare:
                    emit(_t(C.TOOTH), "absent", grps, oth=others)
            else:
                if pres_words != ["left"] and pres_words != ["there"]:
                    emit(_t(C.TOOTH), "present", grps)
                if "erupted" in pres_words:
                    emit(_t(C.IMPACTED_TOOTH), "absent", grps, oth=others)
        return claims, tuple(named)
    # terms
    for i in terms_i:
        tok = toks[i]
        term = tok.term
        if term.sense == "neutral":
            if i in negated or "normal" not in kinds:
                continue
            pol: Polarity = "absent"
        else:
            pol = "absent" if term.sense == "neg" else "present"
            if i in negated:
                if pol == "absent":
                    continue
                pol = "absent"
            elif i in hedged and pol == "present":
                pol = "suspected"
        is_rec = rec_clause or (i + 1 < len(toks) and toks[i + 1].kind == "for" and term.treatment)
        if mode == "summary" and term.treatment and not _EXISTING.search(s[a:b]):
            is_rec = True  # "Restoration of 14; extraction of 28": a plan item in the summary & recommendations
        if is_rec:
            if term.treatment or term.alternatives == {C.MISSING_TOOTH}:
                if pol == "absent":
                    continue
                pol = "recommended"
            elif term.generic:
                continue  # "no treatment is indicated for the findings assessed": advice, not a finding
            elif any(p < tok.start for p in prevent_at):
                continue
            elif (
                any(p < tok.start for p in ruleout_at)
                or re.match(
                    r"\s+(?:check|evaluation|assessment|review|monitoring|screening|follow-up|re-?evaluation)\b",
                    s[tok.end :],
                )
            ) and pol == "present":
                pol = "suspected"
        if any(a <= tok.start < b for a, b in counted):
            continue  # "four molar fillings": the count claim says it
        evaluated = pol == "present" and not term.treatment and _EVALUATE.search(s[a : tok.start]) is not None
        grps = teeth_for(i)
        named += [t for g in grps for t in g.teeth]
        if pol == "absent" and partial and not any(g.teeth for g in grps):
            continue  # "most teeth are caries-free" says nothing about any one tooth
        oth = others and pol == "absent"
        landmark = (
            term.treatment
            and bool(_LANDMARK.search(s[a : tok.start]))
            and any(
                not x.term.treatment and not x.term.generic and not x.term.anatomy for x in toks if x.kind == "term"
            )
        )
        emit(
            term,
            pol,
            grps,
            oth=oth,
            definite_only=(i in weak and pol == "absent") or (i in sure and pol == "present"),
            landmark=landmark,
            inferred=evaluated,
        )
        # "only 46 has a filling" / "a filling only on 46": no filling elsewhere; "46 just has a filling" says
        # what else 46 has, not where else fillings are
        after_teeth = any(
            any(g.kind in ("teeth", "pron") and g.end <= o for g in toks[:i]) for o in only_at if o < tok.start
        )
        if only and not after_teeth and pol in ("present", "suspected") and term.category not in (C.TOOTH, None):
            if term.anatomy:
                sides = {g.region.side for g in grps if g.region and g.region.side}
                for side in {"right", "left"} - sides if sides else ():
                    emit(term, "absent", [_Group(0, 0, (), region_of(side=side), name=side)])
            elif any(g.teeth for g in grps) and term.category != C.MISSING_TOOTH:
                emit(term, "absent", [], oth=True)
            # "bone loss in the upper jaw only": not in the lower jaw; "caries on the left side only": not on the right
            else:
                for g in grps:
                    r = g.region
                    if r is not None and not g.teeth and (r.arch is None) != (r.side is None):
                        other = (
                            region_of("lower" if r.arch == "upper" else "upper", name="other jaw")
                            if r.arch
                            else region_of(side="left" if r.side == "right" else "right", name="other side")
                        )
                        emit(term, "absent", [_Group(0, 0, (), other, name=other.name)])
    return claims, tuple(dict.fromkeys(named))


def _plural_of(toks: Sequence[_Tok]) -> tuple[int, ...]:
    """The teeth of the last plural tooth phrase of a sentence ("the upper wisdom teeth", "38 and 48")."""
    for t in reversed(toks):
        if t.kind != "teeth" or t.group.area or t.group.opposing:
            continue
        g = t.group
        if len(g.teeth) > 1:
            return g.teeth
        if g.region is not None and not g.singular and g.name and len(g.region.teeth) > 1:
            return tuple(sorted(g.region.teeth))
    return ()


_SentenceClaims = tuple[tuple[Claim, ...], tuple[ToothMention, ...], tuple, tuple[int, ...]]
_CONTEXT_FREE: dict[
    tuple[str, str, str, bool], _SentenceClaims
] = {}  # sentences whose claims do not depend on their context
_CONTEXT_FREE_MAX = 32768


def _sentence_claims(
    sentence: str,
    masked: str,
    mode: str,
    question: bool,
    subject: tuple[int, ...],
    pron: tuple[int, ...],
    plural: tuple[int, ...] = (),
) -> _SentenceClaims:
    """Claims of one sentence, offsets relative to it. Memoised twice: a sentence that never reads its context
    (no pronoun, no elliptical clause) is cached under its text alone, so it is read once whatever precedes it."""
    key = (sentence, masked, mode, question)
    hit = _CONTEXT_FREE.get(key)
    if hit is not None:
        return hit
    result, used = _sentence_claims_in(sentence, masked, mode, question, subject, pron, plural)
    if not used:
        if len(_CONTEXT_FREE) >= _CONTEXT_FREE_MAX:
            _CONTEXT_FREE.clear()
        _CONTEXT_FREE[key] = result
    return result


@lru_cache(maxsize=16384)
def _sentence_claims_in(
    sentence: str,
    masked: str,
    mode: str,
    question: bool,
    subject: tuple[int, ...],
    pron: tuple[int, ...],
    plural: tuple[int, ...],
) -> tuple[_SentenceClaims, bool]:
    """(claims, whether they depend on the context)."""
    toks, mentions, mismatches = _scan(masked)
    if is_coverage_statement(
        sentence
    ):  # "This review covers caries only; ... were not assessed": says nothing found or not
        return ((), tuple(mentions), tuple(mismatches), ()), False
    ctx = _Ctx(subject=subject, pron=pron or subject, plural=plural)
    out: list[Claim] = []
    last: tuple[int, ...] = ()
    prev_exc_terms: list[Term] = []
    held: tuple[int, int, list[_Tok]] | None = None  # a leading "apart from ..." phrase without a finding of its own
    for ca, cb, ctoks, exc in _clauses(masked, toks):
        if exc == "lead_exc" and not any(t.kind == "term" for t in ctoks):
            held = (ca, cb, ctoks)
            continue
        if last:
            ctx.subject = ctx.pron = last
            ctx.external = False
        if prev_exc_terms and not any(t.kind == "term" for t in ctoks) and any(t.kind == "teeth" for t in ctoks):
            # "no caries except on 36": the excepted teeth have it
            for term in prev_exc_terms:
                for t in ctoks:
                    for tooth in t.group.teeth if t.kind == "teeth" else ():
                        out.append(
                            Claim(
                                term.category,
                                "present",
                                (ca, cb),
                                tooth,
                                None,
                                term.alternatives,
                                term.lesion_type,
                                None,
                                False,
                                question,
                                sentence[ca:cb].strip(),
                            )
                        )
            prev_exc_terms = []
            continue
        claims, named = _claims_of_clause(
            masked, 0, ca, cb, ctoks, ctx, mode, question, "others" if exc == "lead_exc" else exc, sentence
        )
        out += claims
        if held is not None:  # the excepted teeth have what the rest denies
            ha, hb, htoks = held
            for c in claims:
                if c.polarity == "absent" and c.count is None:
                    for t in htoks:
                        if t.kind != "teeth":
                            continue
                        # "the questionable 14": a hedge right before the teeth
                        hedged = any(
                            h.kind.startswith("hedge")
                            and h.end <= t.start
                            and re.fullmatch(r"\s*(?:the\s+)?", masked[h.end : t.start])
                            for h in htoks
                        )
                        for tooth in t.group.teeth:
                            out.append(
                                replace(
                                    c,
                                    polarity="suspected" if hedged else "present",
                                    tooth=tooth,
                                    region=None,
                                    others=False,
                                    span=(ha, hb),
                                    text=sentence[ha:hb].strip(),
                                )
                            )
            held = None
        topic = tuple(t.term for t in ctoks if t.kind == "term" and not t.term.generic and t.term.sense == "pos")
        if topic:
            ctx.topic = topic
            ctx.topic_rec = mode == "rec" or any(t.kind == "rec" for t in ctoks)
        if named:
            last = named
        prev_exc_terms = [t.term for t in ctoks if t.kind == "term"] if exc is True else []
    return (tuple(out), tuple(mentions), tuple(mismatches), last), ctx.used


def _moved(obj: Any, a: int) -> Any:
    """A copy of a frozen Claim/ToothMention with its span moved by `a` (dataclasses.replace, without its cost)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__["span"] = (obj.span[0] + a, obj.span[1] + a)
    return new


def _shift(
    claims: Iterable[Claim], mentions: Iterable[ToothMention], mismatches: Iterable, a: int
) -> tuple[list, list, list]:
    if not a:
        return list(claims), list(mentions), list(mismatches)
    return (
        [_moved(c, a) for c in claims],
        [_moved(m, a) for m in mentions],
        [(n, t, (sp[0] + a, sp[1] + a)) for n, t, sp in mismatches],
    )


def extract(text: str, context: str | None = None) -> Extraction:
    """Claims, tooth mentions and tooth-name mismatches of `text`. `context` (the question an
    answer replies to, the previous dialogue turn) supplies the subject of pronouns and of
    clauses that name no tooth ("It has deep caries.")."""
    return _extract(text or "", context or None)


@lru_cache(maxsize=4096)
def _extract(text: str, context: str | None) -> Extraction:
    claims_out: list[Claim] = []
    teeth_out: list[ToothMention] = []
    mismatches_out: list = []
    particle: str | None = None
    subject: tuple[int, ...] = extract(context).last_teeth if context else ()
    pron = subject
    plural = extract(context).last_plural if context else ()
    answer_mode = "rec" if context and is_recommendation_question(context) else ""
    masked, modes = _mask(text)
    pm = _PARTICLE.match(masked)
    if pm:
        particle = "no" if pm.group("p") in ("no", "nope") else "yes"
        masked = " " * pm.end() + masked[pm.end() :]
    for a, b in _sentences(masked):
        mode = next((m for s0, e0, m in modes if s0 <= a <= e0), "") or answer_mode
        question = text[a:b].rstrip().endswith("?")
        claims, mentions, mismatches, last = _sentence_claims(
            text[a:b], masked[a:b], mode, question, subject, pron, plural
        )
        claims, mentions, mismatches = _shift(claims, mentions, mismatches, a)
        claims_out += claims
        teeth_out += mentions
        mismatches_out += mismatches
        # an elliptical clause takes its teeth from its own sentence (or the question) only; a semicolon joins
        # two clauses of one sentence ("#16 is crowned; there is a PA lesion")
        subject = (last or subject) if masked[a:b].rstrip().endswith(";") else ()
        if last:
            pron = last
        plural = _plural_of(_scan(masked[a:b])[0]) or plural
    claims_out += _empty_parts(text)
    return Extraction(text, tuple(claims_out), tuple(teeth_out), tuple(mismatches_out), particle, pron, plural)


_NONE_BODY = re.compile(
    r"^[\s*_:.\-–—]*(?:none|nil|n/?a|no|nothing|none\s+(?:seen|noted|detected|identified|found|present|visible))[\s*_.]*$",
    re.IGNORECASE,
)


def _empty_parts(text: str) -> list[Claim]:
    """ "Historical Interventions: None.": a report sub-section answered with a bare "none" denies its whole kind."""
    out = []
    for sec in _sections(text):
        for part in sec.parts:
            if part.kind in ("pathology", "treatments") and _NONE_BODY.match(part.body):
                alts = TREATMENTS if part.kind == "treatments" else PATHOLOGY_ANY - {C.BONE_LOSS}
                out.append(
                    Claim(
                        None,
                        "absent",
                        (part.start, part.end),
                        alternatives=frozenset(alts),
                        text=text[part.start : part.end].strip(),
                    )
                )
    return out


def is_hedged(text: str) -> bool:
    """Has a hedging cue ("possibly", "may", "suspected", "cannot be excluded")."""
    masked, _ = _mask(text or "")
    return any(kind.startswith("hedge") and rx.search(masked) for kind, rx in _CUE_RE)


def is_recommendation_question(text: str) -> bool:
    """Asks for advice ("What is recommended for 36?"): its answers recommend, they do not find."""
    low = (text or "").lower()
    return bool(_REC_QUESTION.search(low)) or (
        _TREATMENT_QUESTION.search(low) is not None
        and (_ADVICE_WORDS.search(low) is not None or _HISTORY_WORDS.search(low) is None)
    )


def extract_claims(text: str, context: str | None = None) -> list[Claim]:
    return list(extract(text, context).claims)


def teeth_in(text: str) -> list[int]:
    """FDI teeth a text names, in order: numbers ('tooth 36', '#36', bare '36'), ranges ('31-33'),
    lists ('11, 12 and 21') and fully specified names ('lower left first molar'). Counts ('28
    teeth'), measurements, decimals and coordinates are not teeth."""
    return list(dict.fromkeys(m.tooth for m in extract(text).teeth if m.valid))


def region_in(text: str) -> Region | None:
    """The first region (jaw, side, quadrant, dentition) a text names, e.g. where a how-many question counts."""
    masked, _ = _mask(text or "")
    for a, b in _sentences(masked):
        for t in _scan(masked[a:b])[0]:
            if (
                t.kind == "teeth"
                and t.group.region is not None
                and not t.group.teeth
                and t.group.region is not WHOLE_MOUTH
            ):
                return t.group.region
    return None


def categories_in(text: str) -> set[Category]:
    """Categories a text names, whatever it says about them (present, absent, suspected,
    recommended, or only the structure: "bone level" names bone loss). Generic words ("pathology")
    name none."""
    masked, _ = _mask(text or "")
    out: set[Category] = set()
    for a, b in _sentences(masked):
        toks, _m, _mm = _scan(masked[a:b])
        out |= {t.term.category for t in toks if t.kind == "term" and t.term.category is not None}
    return out


# --- structured answers -------------------------------------------------------------------------------

_TOOTH_KEYS = ("tooth_id", "tooth", "fdi", "tooth_number", "number", "tooth_fdi", "id")
_CAT_KEYS = (
    "category",
    "finding",
    "condition",
    "label",
    "type",
    "name",
    "treatment",
    "pathology",
    "status",
    "wisdom_status",
)
_CAT_KEY_SET = frozenset(_CAT_KEYS)
_LIST_KEYS = ("conditions", "findings", "treatments", "pathologies", "diagnoses", "labels")
_JAW_KEYS = {
    "bone_loss": C.BONE_LOSS,
    "mandibular_canal": C.MANDIBULAR_CANAL,
    "mandibular_canals": C.MANDIBULAR_CANAL,
    "maxillary_sinus": C.MAXILLARY_SINUS,
    "maxillary_sinuses": C.MAXILLARY_SINUS,
}
_TEETH_LIST_KEYS = {
    "teeth": C.TOOTH,
    "teeth_present": C.TOOTH,
    "visible_teeth": C.TOOTH,
    "present_teeth": C.TOOTH,
    "missing_teeth": C.MISSING_TOOTH,
    "missing": C.MISSING_TOOTH,
    "impacted_teeth": C.IMPACTED_TOOTH,
    "wisdom_teeth": C.TOOTH,
}


@lru_cache(maxsize=4096)
def _category_of(value: str) -> tuple[Term | None, bool]:
    """A category name (or short phrase) in a structured answer -> (term, suspected)."""
    v = str(value)
    if normalise_name(v) in LESION_TYPES_SET:
        return _t(C.PERIAPICAL_LESION, lesion=normalise_name(v)), False
    u = unify_category(v)
    if u is not None and u[0] != C.TOOTH:
        return _t(u[0], lesion=u[1]), False
    claims = extract_claims(v.replace("_", " "))
    asserted = [c for c in claims if c.polarity in ("present", "suspected")]
    if asserted:
        c = asserted[0]
        return Term(c.category, c.alternatives, "pos", c.lesion_type), c.polarity == "suspected"
    if normalise_name(v) in ("erupted",):
        return None, False
    return None, False


LESION_TYPES_SET = frozenset({"granuloma", "cyst", "abscess"})
_HEDGE_KEY_SET = frozenset({"certainty", "confidence", "likelihood", "status", "diagnosis_status"})
_FLAG_KEYS = _HEDGE_KEY_SET | {"suspected", "hedged", "possible"}


@lru_cache(maxsize=1024)
def _norm_value(v: str) -> str:
    return normalise_name(v)


def _flagged(d: dict) -> bool:
    """A structured finding marked as a suspicion ("suspected": true, "certainty": "possible")."""
    keys = d.keys() & _FLAG_KEYS
    if not keys:
        return False
    return bool(d.get("suspected") or d.get("hedged") or d.get("possible")) or any(
        isinstance(d[k], str) and _norm_value(d[k]) in _HEDGED_VALUES for k in keys & _HEDGE_KEY_SET
    )


_HEDGED_VALUES = frozenset(
    {
        "suspected",
        "possible",
        "probable",
        "likely",
        "questionable",
        "uncertain",
        "low",
        "equivocal",
        "suspicious",
        "tentative",
    }
)


def _side_region(value: Any) -> Region | None:
    return _side_region_of(value) if isinstance(value, str) and value else None


@lru_cache(maxsize=256)
def _side_region_of(value: str) -> Region | None:
    v = normalise_name(value)
    if not v:
        return None
    arch = "upper" if re.search(r"upper|maxill", v) else "lower" if re.search(r"lower|mandib", v) else None
    side = "left" if "left" in v else "right" if "right" in v else None
    if arch is None and side is None:
        return None
    return region_of(arch, side)


def _shown(node: Any) -> str:
    """A short rendering of the JSON a claim comes from (for rejection reasons)."""
    if isinstance(node, str):
        return node[:160]
    if isinstance(node, dict):
        parts = [
            f'"{k}":{v!r}' if not isinstance(v, (dict, list)) else f'"{k}":[...]'
            for k, v in list(node.items())[:6]
            if k not in _BOX_KEYS
        ]
        return ("{" + ",".join(parts) + "}")[:160]
    return str(node)[:160]


_BOX_KEYS = ("box_2d", "bbox", "box")
_TOOTH_KEY = re.compile(r"(?:tooth[\s_#-]*|#)?(\d{2})")


def claims_from_json(obj: Any) -> list[Claim]:
    """Claims of a structured answer (attribute extraction): every tooth it lists is claimed
    present (or missing under a missing-teeth key), every condition on it present (suspected when
    flagged), jaw lists claim their findings by region and an empty list claims absence. Boxes are
    not claims; the validators compare them separately (`json_boxes`)."""
    out: list[Claim] = []
    span = (0, 0)

    def add(term: Term, pol: Polarity, tooth: int | None = None, region: Region | None = None, text: Any = "") -> None:
        out.append(
            Claim(
                term.category,
                pol,
                span,
                tooth,
                region,
                term.alternatives,
                term.lesion_type,
                None,
                False,
                False,
                _shown(text),
            )
        )

    def tooth_of(d: dict) -> int | None:
        for k in _TOOTH_KEYS:
            if k in d:
                try:
                    return int(str(d[k]).strip().lstrip("#"))
                except ValueError:
                    return None
        return None

    def conditions(d: dict, tooth: int | None, region: Region | None) -> int:
        n = 0
        suspected_flag = _flagged(d)
        lesion_name = _norm_value(d["type"]) if isinstance(d.get("type"), str) else ""
        lesion = lesion_name if lesion_name in LESION_TYPES_SET else None
        for k in _CAT_KEYS:
            if k in d and isinstance(d[k], str):
                if k == "type" and lesion:
                    continue
                if k == "status" and normalise_name(d[k]) == "erupted":
                    add(_t(C.IMPACTED_TOOTH), "absent", tooth, region, d)
                    n += 1
                    continue
                term, susp = _category_of(d[k])
                if term is None:
                    continue
                if lesion and term.category == C.PERIAPICAL_LESION:
                    term = replace(term, lesion_type=lesion)
                add(term, "suspected" if (susp or suspected_flag) else "present", tooth, region, d)
                n += 1
        for k in _LIST_KEYS:
            for item in d.get(k) or [] if isinstance(d.get(k), list) else []:
                if isinstance(item, str):
                    term, susp = _category_of(item)
                    if term is not None:
                        add(term, "suspected" if susp else "present", tooth, region, item)
                        n += 1
                elif isinstance(item, dict):
                    walk(item, tooth, k)
                    n += 1
        return n

    def walk(node: Any, tooth: int | None = None, key: str = "") -> None:
        if isinstance(node, list):
            if not node and key in _JAW_KEYS:
                add(_t(_JAW_KEYS[key]), "absent", text={key: []})
            if not node and key in ("treatments", "findings"):
                add(
                    _t(None, TREATMENTS if key == "treatments" else PATHOLOGY_ANY - {C.BONE_LOSS}),
                    "absent",
                    text={key: []},
                )  # bone loss has its own key
            for item in node:
                if isinstance(item, (int, float)) or (isinstance(item, str) and item.strip().lstrip("#").isdigit()):
                    t = int(str(item).strip().lstrip("#"))
                    cat = _TEETH_LIST_KEYS.get(key)
                    if cat is None:
                        term, _ = _category_of(key.replace("_", " "))
                        if term is None:
                            continue
                        add(term, "present", t, text={key: [t]})
                    else:
                        add(_t(cat), "present", t, text={key: [t]})
                elif isinstance(item, str) and key in _JAW_KEYS:  # "mandibular_canal": ["right", "left"]
                    add(_t(_JAW_KEYS[key]), "present", None, _side_region(item), {key: [item]})
                elif isinstance(item, str) and tooth is not None:  # {"36": ["deep caries", "granuloma"]}
                    term, susp = _category_of(item)
                    if term is not None:
                        add(term, "suspected" if susp else "present", tooth, None, {str(tooth): [item]})
                else:
                    walk(item, tooth, key)
            return
        if not isinstance(node, dict):
            return
        t = tooth_of(node)
        region = _side_region(node.get("region") or node.get("side") or node.get("location") or node.get("position"))
        has_cat = not node.keys().isdisjoint(_CAT_KEY_SET) and any(isinstance(node.get(k), str) for k in _CAT_KEYS)
        # a dict under a finding's own key ({"caries": [{"tooth": 47}, {"side": "lower left"}]}) is that finding
        key_term = (
            _category_of(key.replace("_", " "))[0]
            if key and key not in _JAW_KEYS and key not in _TEETH_LIST_KEYS
            else None
        )
        if key_term is not None and (key_term.category is None or key_term.category == C.TOOTH):
            key_term = None
        flagged = key_term is not None and _flagged(node)
        if key in _JAW_KEYS and t is None:
            add(_t(_JAW_KEYS[key]), "suspected" if node.get("suspected") else "present", None, region, {key: node})
            return
        if t is not None:
            n = conditions(node, t, None)
            if any(node.get(k) == [] for k in ("conditions", "findings", "pathologies", "diagnoses")):
                add(
                    _t(None, TOOTH_FINDINGS), "absent", t, None, node
                )  # {"tooth_id": 27, "conditions": []}: nothing on 27
            if n == 0 and key_term is not None:
                add(key_term, "suspected" if flagged else "present", t, None, {key: node})
                n = 1
            if "teeth" in node and isinstance(node["teeth"], list):
                walk(node["teeth"], None, "missing_teeth" if key in ("missing_teeth", "missing") else "teeth")
            if n == 0 and key not in ("unknown_tooth_findings",):
                if key in ("missing_teeth", "missing"):
                    add(_t(C.MISSING_TOOTH), "present", t, text=node)
                else:
                    add(_t(C.TOOTH), "present", t, text=node)
            for k, v in node.items():
                if isinstance(v, (dict, list)) and k not in _LIST_KEYS and k not in _BOX_KEYS:
                    walk(v, t, k)
            return
        if key == "unknown_tooth_findings" or (region is not None and has_cat):
            conditions(node, None, region or WHOLE_MOUTH)
            return
        if key_term is not None and not has_cat:
            add(key_term, "suspected" if flagged else "present", tooth, region, {key: node})
            return
        if key in ("missing_teeth", "missing") and "teeth" in node:
            walk(node["teeth"], None, "missing_teeth")
            return
        if has_cat and tooth is not None:
            conditions(node, tooth, None)
            return
        if has_cat and tooth is None:
            conditions(node, None, None)
            return
        for k, v in node.items():
            kt = _TOOTH_KEY.fullmatch(k.strip().lower())
            if kt:  # {"36": ["deep caries", ...]}, {"tooth_47": "caries"}: findings keyed by their tooth
                n = int(kt.group(1))
                if isinstance(v, str):
                    term, susp = _category_of(v)
                    if term is not None:
                        add(term, "suspected" if susp else "present", n, None, {k: v})
                    continue
                if v in ([], {}, None):
                    add(_t(C.TOOTH), "present", n, None, {k: v})
                    continue
                if isinstance(v, dict) and not any(isinstance(v.get(x), str) for x in _CAT_KEYS):
                    walk(v, n, k)
                elif isinstance(v, dict):
                    conditions(v, n, None)
                else:
                    walk(v, n, k)
            elif isinstance(v, (dict, list)) and k not in _BOX_KEYS:
                walk(v, tooth, k)

    walk(obj)
    return out


def parse_json_answer(text: str) -> Any:
    """The JSON of a structured answer (inside a ``` fence if there is one); raises ValueError."""
    from mmoral_pipeline.generation.schemas import extract_json

    try:
        return json.loads(extract_json(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at {exc.pos}") from exc
