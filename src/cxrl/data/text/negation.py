"""Negation-flipped reports: hard negative texts that differ from a report only in what it affirms and denies.

NegCLIP (Yuksekgonul et al., ICLR 2023, section 4) adds composition-perturbed captions as hard negatives to CLIP's
image-to-text term; here the perturbation is the one zero-shot classification needs: polarity. Each sentence is
read by the report labeler (:func:`cxrl.data.text.labeler.sentence_labels`).

- A sentence that only denies findings and opens with its negation loses the cue of each clause: "No
  pneumothorax." -> "Pneumothorax.", "There is no effusion." -> "There is effusion.", "No A or B." -> "A and B.",
  "No A, no B seen." -> "A, B seen.".
- Any other sentence that names findings is rewritten with the polarities reversed: "Small left pneumothorax, no
  effusion." -> "No pneumothorax, but there is pleural effusion.".
- Sentences that name no finding stay.

Every sentence stays one sentence, so sentence ``i`` of the flip is the flip of sentence ``i``.
"""

from __future__ import annotations

import re

from cxrl.data.text import phrases
from cxrl.data.text.labeler import NEGATIVE, sentence_labels
from cxrl.data.text.sentences import split_sentences

_CLAUSE_NEGATION = re.compile(phrases.CLAUSE_NEGATION, re.IGNORECASE)
_OR = re.compile(r"\bor\b", re.IGNORECASE)


def _joined(findings: list[str]) -> str:
    terms = [phrases.CANONICAL[f] for f in findings]
    return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " and " + terms[-1]


def negate_sentence(sentence: str) -> str:
    """``sentence`` with every finding it affirms denied and every finding it denies affirmed (uncertain mentions
    count as affirmed); unchanged when it names no finding."""
    labels = sentence_labels(sentence)
    denied = [f for f, v in labels.items() if v == NEGATIVE]
    stated = [f for f, v in labels.items() if v != NEGATIVE]
    if not labels:
        return sentence
    if not stated and _CLAUSE_NEGATION.match(sentence):
        rest = _CLAUSE_NEGATION.sub(lambda cue: cue.group(1) + (cue.group(2) or ""), sentence)
        rest = _OR.sub("and", rest)  # "No A or B." -> "A and B.", not a hedge
        return rest[:1].upper() + rest[1:]
    parts = ([f"no {_joined(stated)}"] if stated else []) + ([f"there is {_joined(denied)}"] if denied else [])
    text = ", but ".join(parts)
    return text[:1].upper() + text[1:] + "."


def negate_report(text: str | None) -> str | None:
    """The report with each sentence :func:`negate_sentence`-flipped, one space between sentences; None when the
    report is None or names no finding (the flip would equal it)."""
    if text is None:
        return None
    sentences = split_sentences(text)
    flipped = [negate_sentence(s) for s in sentences]
    return None if flipped == sentences else " ".join(flipped)
