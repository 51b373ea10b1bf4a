"""Sentence and clause splitting for radiology reports (rules, no model).

A sentence ends at ``.``, ``!`` or ``?`` followed by white space, or at a line break; a dot inside a number
(``1.5 cm``) or after a short abbreviation (``Dr.``, ``vs.``) does not end one. A clause ends where a
contrasting conjunction or a semicolon starts a new statement, so a negation cue never reaches across it.
"""

from __future__ import annotations

import re

ABBREVIATIONS = ("dr", "vs", "e.g", "i.e", "approx", "mr", "mrs", "ms", "fig")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_ABBREVIATION_END = re.compile(r"\b(?:" + "|".join(re.escape(a) for a in ABBREVIATIONS) + r")\.$", re.IGNORECASE)
CLAUSE_BREAKS = (
    r";",
    r"\bbut\b",
    r"\bhowever\b",
    r"\balthough\b",
    r"\bthough\b",
    r"\bwhereas\b",
    r"\bexcept\b",
    r"\bapart from\b",
    r"\baside from\b",
    r"\bwhich\b",
    r",?\s*(?=\bthere (?:is|are|has been|have been)\b(?! no\b))",
)
_CLAUSE_BREAK = re.compile("|".join(CLAUSE_BREAKS), re.IGNORECASE)


def sentence_spans(text: str) -> list[list[tuple[int, int]]]:
    """Per sentence of ``text``, the ``(start, end)`` character spans of its stripped pieces (one piece unless an
    abbreviation's dot was not an end), in order."""
    sentences: list[list[tuple[int, int]]] = []
    pending: list[tuple[int, int]] = []
    bounds = [0, *(i for m in _SENTENCE_END.finditer(text) for i in m.span()), len(text)]
    for start, end in zip(bounds[::2], bounds[1::2], strict=True):
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            pending.append((start + lead, start + lead + len(piece.strip())))
        if pending and not _ABBREVIATION_END.search(text[pending[-1][0]:pending[-1][1]]):
            sentences.append(pending)
            pending = []
    if pending:
        sentences.append(pending)
    return sentences


def split_sentences(text: str) -> list[str]:
    """The non-empty sentences of ``text``, stripped, in order (pieces joined by one space)."""
    return [" ".join(text[a:b] for a, b in pieces) for pieces in sentence_spans(text)]


def split_clauses(sentence: str) -> list[str]:
    """The clauses of one sentence: pieces between contrasting conjunctions (``but``, ``however``...) and ``;``."""
    return [c.strip(" ,") for c in _CLAUSE_BREAK.split(sentence) if c.strip(" ,")]
