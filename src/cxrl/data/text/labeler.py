"""The rule-based report labeler: a report's text -> the 14 CheXpert labels (1, 0, -1, NaN = not mentioned).

CheXpert-labeler style (Irvin et al., AAAI 2019, Sec. 3.1), with regular expressions in place of NegBio's
dependency patterns: (1) mention extraction per finding (``phrases.MENTIONS``, minus ``UNMENTIONS``; organ
phrases such as "heart size" only beside an enlarged/normal word), (2) classification of each mention, in
CheXpert's order: pre-negation uncertainty ("cannot exclude X"), negation ("no X", "X is not seen"), uncertainty
("possible X", "X is suspected"), else positive; a cue reaches only within its clause, (3) aggregation per
finding: positive beats uncertain beats negative. "No Finding" is 1 when no finding other than Support Devices
(nor another abnormality, ``OTHER_FINDINGS``) is positive or uncertain, else blank, as in CheXpert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from tqdm.auto import tqdm

from cxrl.data.labels import CHEXPERT_PATHOLOGIES
from cxrl.data.text import phrases
from cxrl.data.text.sentences import split_clauses, split_sentences

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
NO_FINDING, SUPPORT_DEVICES = "No Finding", "Support Devices"
FINDINGS = tuple(p for p in CHEXPERT_PATHOLOGIES if p != NO_FINDING)
ORGAN_WINDOW_WORDS = 4  # how many words before an organ phrase may hold its "enlarged" / "normal" word
PROGRESS_MIN = 1000  # show a progress bar from this many reports on


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])(?:" + "|".join(patterns) + ")", re.IGNORECASE)


_MENTION = {f: _compile(p) for f, p in phrases.MENTIONS.items()}
_UNMENTION = {f: _compile(p) for f, p in phrases.UNMENTIONS.items()}
_ORGAN = {f: _compile(p) for f, p in phrases.ORGANS.items()}
_OTHER = _compile(phrases.OTHER_FINDINGS)
_ENLARGED, _NORMAL = _compile([phrases.ENLARGED]), _compile([phrases.NORMAL])
_PSEUDO_NEGATION = _compile(phrases.PSEUDO_NEGATION)
_UNCERTAIN_FIRST = _compile(phrases.UNCERTAIN_FIRST)
_NEGATION_PRE, _NEGATION_POST = _compile(phrases.NEGATION_PRE), _compile(phrases.NEGATION_POST)
_UNCERTAIN_PRE, _UNCERTAIN_POST = _compile(phrases.UNCERTAIN_PRE), _compile(phrases.UNCERTAIN_POST)
_SCOPE_BREAK = re.compile("|".join(phrases.SCOPE_BREAKS), re.IGNORECASE)


def classify(clause: str, start: int, end: int, cues: bool = True) -> float:
    """The label of the mention at ``clause[start:end]`` from the cues before and after it in its clause.

    ``cues=False`` calls every mention positive: the keyword baseline that the cue rules are measured against.
    """
    if not cues:
        return POSITIVE
    before, after = _PSEUDO_NEGATION.sub(" ", clause[:start]), clause[end:].split(",", 1)[0]
    if _UNCERTAIN_FIRST.search(before) or _UNCERTAIN_FIRST.search(after):
        return UNCERTAIN
    if _NEGATION_PRE.search(before) or _NEGATION_POST.search(after):
        return NEGATIVE
    if _UNCERTAIN_PRE.search(before) or _UNCERTAIN_POST.search(after):
        return UNCERTAIN
    return POSITIVE


def _organ_label(clause: str, match: re.Match[str], cues: bool) -> float | None:
    """An organ phrase ("heart size") counts as a mention only beside an enlarged or a normal word."""
    near_before = " ".join(clause[: match.start()].rsplit(",", 1)[-1].split()[-ORGAN_WINDOW_WORDS:])
    window = f"{near_before} {clause[match.end():].split(',', 1)[0]}"
    if cues and _NORMAL.search(window):
        return NEGATIVE
    if _ENLARGED.search(window):
        return classify(clause, match.start(), match.end(), cues)
    return None


def _mask(clause: str, pattern: re.Pattern[str] | None) -> str:
    """``clause`` with the spans of ``pattern`` (a finding's unmentions) blanked, so they match nothing."""
    return clause if pattern is None else pattern.sub(lambda m: " " * len(m.group()), clause)


def clause_mentions(clause: str, cues: bool = True) -> dict[str, list[float]]:
    """Every finding mentioned in one clause with the label of each mention."""
    found: dict[str, list[float]] = {}
    for finding in FINDINGS:
        text = _mask(clause, _UNMENTION.get(finding))
        labels = [classify(text, m.start(), m.end(), cues) for m in _MENTION[finding].finditer(text)]
        if finding in _ORGAN and not labels:
            labels = [x for m in _ORGAN[finding].finditer(text) if (x := _organ_label(text, m, cues)) is not None]
        if labels:
            found[finding] = labels
    return found


def _aggregate(labels: list[float]) -> float:
    """CheXpert's rule: positive if any mention is positive, else uncertain if any is, else negative."""
    return next(v for v in (POSITIVE, UNCERTAIN, NEGATIVE) if v in labels)


def clauses(sentence: str) -> list[str]:
    """The labeler's scopes in one sentence: its clauses, further cut at ``phrases.SCOPE_BREAKS``."""
    return [c for part in split_clauses(sentence) for c in _SCOPE_BREAK.split(part)]


def sentence_labels(sentence: str) -> dict[str, float]:
    """The findings one sentence mentions, each with its aggregated label (1, 0 or -1); empty when none."""
    mentions: dict[str, list[float]] = {}
    for clause in clauses(sentence):
        for finding, labels in clause_mentions(clause).items():
            mentions.setdefault(finding, []).extend(labels)
    return {f: _aggregate(v) for f, v in mentions.items()}


def label_report(text: str, cues: bool = True) -> dict[str, float]:
    """The 14 CheXpert labels of one report, in ``CHEXPERT_PATHOLOGIES`` order (NaN = not mentioned).

    ``cues=False`` ignores negation and uncertainty (every mention positive): the keyword baseline.
    """
    mentions: dict[str, list[float]] = {}
    other_abnormal = False
    for sentence in split_sentences(text):
        for clause in clauses(sentence):
            for finding, labels in clause_mentions(clause, cues).items():
                mentions.setdefault(finding, []).extend(labels)
            other = (classify(clause, m.start(), m.end(), cues) for m in _OTHER.finditer(clause))
            other_abnormal |= any(label != NEGATIVE for label in other)
    labels = {f: _aggregate(v) for f, v in mentions.items()}
    abnormal = other_abnormal or any(v != NEGATIVE for f, v in labels.items() if f != SUPPORT_DEVICES)
    labels[NO_FINDING] = np.nan if abnormal else POSITIVE
    return {p: labels.get(p, np.nan) for p in CHEXPERT_PATHOLOGIES}


def label_reports(texts: Iterable[str], progress: bool | None = None, cues: bool = True) -> np.ndarray:
    """Label many reports: a float32 ``(N, 14)`` array in ``CHEXPERT_PATHOLOGIES`` order.

    ``progress`` shows a tqdm bar; by default only from ``PROGRESS_MIN`` reports on.
    """
    texts = list(texts)
    show = len(texts) >= PROGRESS_MIN if progress is None else progress
    bar = tqdm(texts, desc="label reports", unit="report", disable=not show)
    rows = [list(label_report(t, cues).values()) for t in bar]
    return np.array(rows, dtype=np.float32).reshape(len(texts), len(CHEXPERT_PATHOLOGIES))
