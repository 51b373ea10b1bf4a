"""MIMIC-CXR report sections held against a small re-statement of MIT-LCP's rules (``txt/section_parser.py``,
``create_section_files.py``) on ten report shapes written as MIMIC writes them (lines start with a space)."""

from __future__ import annotations

import re

import pytest

from cxrl.data.sources.report_sections import findings_and_impression, section_name

TITLE = "                                 FINAL REPORT\n"
SHAPES = {
    "plain": TITLE + " EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ year old woman with cough.\n \n"
    " FINDINGS:\n \n Mild cardiomegaly.  Small left pleural effusion.\n \n IMPRESSION:\n \n Small left effusion.\n",
    "chest two views": TITLE + " INDICATION:  Fever.\n \n CHEST, TWO VIEWS:  The lungs are clear.  No effusion.\n \n"
    " IMPRESSION:  No pneumonia.\n",
    "portable ap": TITLE + " PORTABLE AP CHEST RADIOGRAPH:\n \n Endotracheal tube 4 cm above the carina.\n",
    "pa and lateral, impresson": TITLE + " PA AND LATERAL VIEWS OF THE CHEST:  Heart size normal.\n \n"
    " IMPRESSON:  No acute process.\n",
    "findings/ impression": TITLE + " COMPARISON:  ___.\n \n FINDINGS/ IMPRESSION:  Stable small effusions.\n",
    "headers containing the names": TITLE + " ADDITIONAL FINDINGS:  Old rib fractures.\n \n"
    " IMPRESSION AND PLAN:  No acute change.\n",
    "repeated impression": TITLE + " FINDINGS:  Right lower lobe opacity.\n \n IMPRESSION:  Pneumonia.\n \n"
    " ADDENDUM:  Lateral view reviewed.\n \n IMPRESSION:  Right lower lobe pneumonia.\n",
    "title header, text after comparison": " CHEST, PA LATERAL:\n \n INDICATION:  Cough.\n \n COMPARISON:  ___.\n \n"
    " The heart is normal in size.  Lungs are clear.\n \n No acute process.\n",
    "no headers": " PORTABLE CHEST, ___\n \n Comparison ___.\n \n Lines and tubes unchanged.  No pneumothorax.\n",
    "comparison only": TITLE + " EXAMINATION:  CHEST (PORTABLE AP)\n \n INDICATION:  Line placement.\n \n"
    " COMPARISON:  Right IJ line tip in the SVC.  No pneumothorax.\n",
}
# The entries of MIT-LCP's name table these shapes meet, then its two generic rules.
NAMES = {"examination": "examination", "indication": "indication", "comparison": "comparison",
         "chest, two views": "findings", "addendum": "addendum", "impresson": "impression",
         "findings/ impression": "impression"}  # fmt: skip
MAIN = ["impression", "findings", "history", "comparison", "addendum"]
STUDY = re.compile("chest|portable|pa and lateral|lateral and pa|two views")


def mit_lcp(text: str) -> tuple[str | None, str | None]:
    """(findings, impression) as MIT-LCP sections a report; the impression falls back to its conclusion."""
    names, bodies = [], []
    found = re.search(r"\n ([A-Z ()/,-]+):\s", text)
    names.append("preamble" if found else "full report")
    bodies.append(text[: found.start(1)] if found else text)
    while found:
        skip = text[found.end() :].find("\n")
        after = re.compile(r"\n ([A-Z ()/,-]+):\s").search(text, found.end() + max(skip, 0))
        name = found.group(1).lower().strip()
        main = [m for m in MAIN if m in name]
        names.append(NAMES.get(name) or (main[0] if main else "findings" if STUDY.search(name) else name))
        bodies.append(text[found.end() : after.start() if after else len(text)])
        found = after
    for i in reversed(range(len(names))):
        if names[i] in ("impression", "findings") and not bodies[i].strip():
            del names[i], bodies[i]
    if "impression" not in names and "findings" not in names and "\n \n" in bodies[-1]:
        first, *rest = bodies[-1].split("\n \n")
        bodies[-1:] = [first, "\n \n".join(rest)]
        names.append("last_paragraph")

    def last(name: str) -> str | None:
        return " ".join(bodies[len(names) - 1 - names[::-1].index(name)].split()) if name in names else None

    conclusion = next((last(n) for n in ("impression", "findings", "last_paragraph", "comparison") if last(n)), None)
    return last("findings") or None, last("impression") or (None if last("findings") else conclusion)


@pytest.mark.parametrize("shape", SHAPES)
def test_sections_match_mit_lcp(shape):
    assert findings_and_impression(SHAPES[shape]) == mit_lcp(SHAPES[shape])


def test_last_impression_study_headers_and_fallbacks():
    results = {shape: findings_and_impression(text) for shape, text in SHAPES.items()}
    assert results["repeated impression"][1] == "Right lower lobe pneumonia."
    assert results["chest two views"][0] == "The lungs are clear. No effusion."
    assert results["title header, text after comparison"] == (
        None,
        "The heart is normal in size. Lungs are clear. No acute process.",
    )
    assert results["comparison only"] == (None, "Right IJ line tip in the SVC. No pneumothorax.")


@pytest.mark.parametrize(
    ("header", "name"),
    [("IMPRESSON", "impression"), ("FINDINGS/ IMPRESSION", "impression"), ("PORTABLE AP CHEST RADIOGRAPH", "findings"),
     ("PA AND LATERAL VIEWS OF THE CHEST", "findings"), ("CHEST, TWO VIEWS", "findings"), ("FINIDNGS", "findings"),
     ("REASON FOR EXAM", "indication"), ("PRELIMINARY IMPRESSION", "impression"), ("CLINICAL HISTORY", "history"),
     ("RECOMMENDATION(S)", "recommendations"), ("WETREAD", "wet read")],
)  # fmt: skip
def test_header_names_are_normalized_as_mit_lcp(header, name):
    assert section_name(header) == name
