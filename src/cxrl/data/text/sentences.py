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


def split_sentences(text: str) -> list[str]:
    """The non-empty sentences of ``text``, stripped, in order."""
    sentences: list[str] = []
    pending = ""
    for piece in _SENTENCE_END.split(text):
        pending = f"{pending} {piece}".strip() if pending else piece.strip()
        if pending and not _ABBREVIATION_END.search(pending):
            sentences.append(pending)
            pending = ""
    if pending:
        sentences.append(pending)
    return sentences


def split_clauses(sentence: str) -> list[str]:
    """The clauses of one sentence: pieces between contrasting conjunctions (``but``, ``however``...) and ``;``."""
    return [c.strip(" ,") for c in _CLAUSE_BREAK.split(sentence) if c.strip(" ,")]
