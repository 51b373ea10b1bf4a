"""MIMIC-CXR report sections as MIT-LCP's ``mimic-cxr`` repository makes them (Johnson et al., 2019).

``txt/section_parser.py`` splits a report at upper-case headers (``\\n ([A-Z ()/,-]+):\\s``; the search for the
next header resumes after the first line break that follows a header), names the text before the first header
``preamble`` (a report without headers is one ``full report``), and normalizes the header names: a table of
frequent names and misspellings, then any name containing impression, findings, history, comparison or addendum
takes that name, then a name describing the study (``CHEST, TWO VIEWS``, ``PORTABLE AP CHEST RADIOGRAPH``)
becomes findings. Empty findings and impression sections are dropped. A report with neither gets a
``last_paragraph``: what follows the first blank line of its last section. ``txt/create_section_files.py`` then
takes the *last* section of each name. The per-study manual overrides of ``custom_mimic_cxr_rules`` are not
applied. One liberty: a blank line may hold any spaces (MIT-LCP requires exactly one, as MIMIC writes them).
"""

from __future__ import annotations

import re

HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s")
BLANK_LINE = re.compile(r"\n[ \t]*\n")
SECTION_NAMES = {
    "impression": "impression",
    "comparison": "comparison",
    "indication": "indication",
    "findings": "findings",
    "examination": "examination",
    "technique": "technique",
    "history": "history",
    "comparisons": "comparison",
    "clinical history": "history",
    "reason for examination": "indication",
    "notification": "notification",
    "reason for exam": "indication",
    "clinical information": "history",
    "exam": "examination",
    "clinical indication": "indication",
    "conclusion": "impression",
    "chest, two views": "findings",
    "recommendation(s)": "recommendations",
    "type of examination": "examination",
    "reference exam": "comparison",
    "patient history": "history",
    "addendum": "addendum",
    "comparison exam": "comparison",
    "date": "date",
    "comment": "comment",
    "findings and impression": "impression",
    "wet read": "wet read",
    "comparison film": "comparison",
    "recommendations": "recommendations",
    "findings/impression": "impression",
    "pfi": "history",
    "recommendation": "recommendations",
    "wetread": "wet read",
    "ndication": "impression",  # sic, as in MIT-LCP's table
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "findings/ impression": "impression",
    "finding": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "idication": "indication",
    "reference findings": "findings",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
}
MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
STUDY_WORDS = re.compile(
    "chest|portable|pa and lateral|lateral and pa|ap and lateral|lateral and ap|frontal and|two views|frontal view"
    "|pa view|ap view|one view|lateral view|bone window|frontal upright|frontal semi-upright|ribs|pa and lat"
)
CONCLUSION_FALLBACK = ("last_paragraph", "comparison")


def section_name(header: str) -> str:
    """The normalized name of one header (without its colon)."""
    name = header.lower().strip()
    if name in SECTION_NAMES:
        return SECTION_NAMES[name]
    main = next((m for m in MAIN_SECTIONS if m in name), None)
    if main is not None:
        return main
    return "findings" if STUDY_WORDS.search(name) else name


def split_sections(text: str) -> list[tuple[str, str]]:
    """``(normalized name, raw text)`` of every section in report order, as ``section_parser.section_text``."""
    match = HEADER.search(text)
    sections = [("full report", text)] if match is None else [("preamble", text[: match.start(1)])]
    while match is not None:
        start = match.end()
        newline = text.find("\n", start)
        following = HEADER.search(text, newline if newline >= 0 else start)
        sections.append((section_name(match.group(1)), text[start : following.start() if following else len(text)]))
        match = following
    sections = [(n, t) for n, t in sections if n not in ("impression", "findings") or t.strip()]
    if not any(n in ("impression", "findings") for n, _ in sections):
        name, last = sections[-1]
        head, *rest = BLANK_LINE.split(last, maxsplit=1)
        if rest:
            sections[-1:] = [(name, head), ("last_paragraph", rest[0])]
    return sections


def report_sections(text: str) -> dict[str, str]:
    """The last section of each normalized name, whitespace collapsed (``create_section_files``' choice)."""
    return {name: " ".join(body.split()) for name, body in split_sections(text.replace("\r\n", "\n"))}


def findings_and_impression(text: str) -> tuple[str | None, str | None]:
    """FINDINGS and IMPRESSION of a report; empty ones are None.

    When a report has neither, its ``last_paragraph``, else its ``comparison`` section, stands as the impression:
    the conclusion MIT-LCP's ``create_section_files`` writes for such a report.
    """
    sections = report_sections(text)
    impression = sections.get("impression")
    if impression is None and "findings" not in sections:
        impression = next((sections[n] for n in CONCLUSION_FALLBACK if n in sections), None)
    return sections.get("findings") or None, impression or None
