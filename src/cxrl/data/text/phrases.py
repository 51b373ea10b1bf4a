"""The labeler's vocabulary: mention phrases per CheXpert finding and the negation / uncertainty cues.

Written for cxrl after the categories of the CheXpert labeler (Irvin et al., AAAI 2019, Sec. 3.1: mention,
unmention, pre-negation uncertainty, negation, post-negation uncertainty) and NegBio (Peng et al., AMIA 2018).
Each phrase is a regular expression matched case-insensitively from a word start; a stem such as ``atelecta``
matches every inflection. ``ORGANS`` are findings named through their organ ("heart size", "mediastinum"): they
count only beside an ``ENLARGED`` word (positive) or a ``NORMAL`` one (negative).
"""

from __future__ import annotations

MENTIONS: dict[str, tuple[str, ...]] = {
    "Enlarged Cardiomediastinum": (r"widen\w* mediastin\w*", r"mediastinal widening", r"cardiomediastinal enlargement"),
    "Cardiomegaly": (r"cardiomegaly", r"cardiac enlargement", r"enlarged (?:heart|cardiac)", r"cardiac hypertrophy"),
    "Lung Opacity": (
        r"opaci", r"infiltrat", r"air[- ]?space (?:disease|process)", r"increased densit", r"(?<!no )densit(?:y|ies)",
        r"interstitial (?:marking|pattern|prominence|lung|opaci|disease|thickening)", r"reticula", r"scar",
        r"peribronchial (?:thickening|cuffing)", r"airspace", r"haziness", r"hazy",
    ),
    "Lung Lesion": (
        r"mass(?:es)?\b", r"nodul(?:e|es|ar)\b", r"lesions?\b", r"tumou?r", r"neoplas", r"carcinoma", r"cavita",
        r"metasta", r"lump",
    ),
    "Edema": (
        r"edema", r"oedema", r"(?:heart|cardiac) failure", r"chf\b", r"vascular congestion", r"pulmonary congestion",
        r"vascular (?:prominence|engorgement|redistribution|indistinctness|margination)", r"cephalization", r"kerley",
        r"congesti", r"engorge", r"(?:increased|prominent|indistinct) (?:\w+ )?vascula\w*",
        r"prominence of the (?:\w+ )?vascula\w*", r"vascula\w* (?:is|are) (?:increased|engorged|prominent)",
    ),
    "Consolidation": (r"consolidat",),
    "Pneumonia": (r"pneumoni", r"infectio", r"infectious", r"bronchopneumonia"),
    "Atelectasis": (r"atelecta", r"collapse", r"subsegmental", r"discoid", r"plate-?like"),
    "Pneumothorax": (r"pneumothora", r"hydropneumothora"),
    "Pleural Effusion": (
        r"effusion", r"pleural fluid", r"hydropneumothora", r"hemothorax", r"fluid in the \w+ fissure",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|plaque|scar|calcification|fibrosis)", r"fibrothorax", r"pleuro-?parenchymal",
        r"fissural thickening", r"thickening of the (?:\w+ )?fissure", r"apical (?:pleural )?(?:capping|thickening)",
    ),
    "Fracture": (r"fractur", r"\bfx\b"),
    "Support Devices": (
        r"pacer", r"pacemaker", r"(?:central venous |venous |central |midline |arterial )?(?:line|lines)\b", r"picc",
        r"tubes?\b", r"catheter", r"valve replacement", r"prosthe", r"hardware", r"arthroplast", r"icd\b",
        r"defibrillator", r"devices?\b", r"drains?\b", r"plates?\b(?!-)", r"screws?\b", r"cannula", r"coils?\b",
        r"(?:surgical |vascular |sternal |sternotomy )?(?:clips?|wires?|sutures?|staples?)\b", r"stents?\b",
        r"port-?a-?cath", r"mediport", r"leads?\b", r"generator", r"fixation", r"instrumentation", r"stimulator",
        r"filter", r"tip\b", r"tips\b",
    ),
}
UNMENTIONS: dict[str, tuple[str, ...]] = {
    "Pleural Effusion": (r"pericardial effusion", r"joint effusion"),
    "Lung Lesion": (r"calcified (?:\w+ )?nodul\w*", r"massive", r"granuloma\w*", r"soft tissue mass"),
    "Lung Opacity": (r"pleural scar\w*", r"densit\w* (?:of|in) the (?:bones?|spine)", r"bone densit\w*"),
    "Support Devices": (r"lines? of", r"pleural lines?", r"(?:septal|kerley b?|interstitial) lines?"),
    "Atelectasis": (r"vertebral (?:body )?collapse", r"compression"),
    "Pneumonia": (r"(?:prior |previous |old )?granulomatous infection",),
}
ORGANS: dict[str, tuple[str, ...]] = {
    "Cardiomegaly": (r"heart", r"cardiac (?:silhouette|size|shadow|contours?)", r"heart size"),
    "Enlarged Cardiomediastinum": (
        r"(?:cardio ?)?mediastin\w*(?: (?:silhouette|contours?|width|shadow))?",
    ),
}
ENLARGED = r"(?:enlarg\w*|large|prominen\w*|widen\w*|increased (?:size|width)|big)\b"
NORMAL = (
    r"(?<!ab)normal\w*|unremarkable|within normal limits|not enlarged|upper (?:limits|range) of normal|"
    r"no (?:\w+ )?(?:enlargement|abnormalit\w*|widening)|top normal|negative"
)
# Matched first, so "cannot exclude pneumonia" is uncertain, not negated (CheXpert's pre-negation uncertainty).
UNCERTAIN_FIRST = (
    r"can ?not (?:be )?(?:exclude|excluded|rule out|ruled out)", r"can't (?:exclude|rule out)",
    r"not (?:be )?(?:excluded|ruled out)", r"no new", r"differential",
)
# Labeler scope ends beyond sentences.CLAUSE_BREAKS: "with" (not "with no") and "and" before a new noun phrase.
SCOPE_BREAKS = (r"\bwith\b(?!\s+no\b)", r"\band (?=(?:a|an|the|mild|moderate|small|large|new)\b)")
# Phrases that hold a negation word but deny nothing ("no change in the effusion"): blanked before cue search.
PSEUDO_NEGATION = (
    r"no (?:significant |substantial |interval |appreciable )?(?:change|increase|decrease|worsening)",
    r"not (?:only|significantly changed|changed)", r"without (?:significant |interval )?change",
)
NEGATION_PRE = (
    r"no\b", r"not\b", r"without", r"free of", r"clear of", r"absence of", r"absent", r"resolution of",
    r"resolved", r"removal of", r"rather than", r"never", r"nor\b", r"(?<!ab)normal", r"unremarkable", r"neither",
    r"rule[sd]? out", r"exclude[sd]?", r"negative", r"none",
)
NEGATION_POST = (
    r"(?:is|are|was|were|has been|have been)?\s*(?:not|no longer)\s+(?:\w+ )?(?:seen|identified|present|evident|"
    r"visuali[sz]ed|appreciated|demonstrated|detected|noted|apparent|enlarged)",
    r"(?:has|have)?\s*resolved", r"(?:is|are)?\s*(?:absent|negative)", r"(?:is|are|appears?|remains?)?\s*(?<!ab)normal",
    r"within normal limits", r"unremarkable", r"(?:is|are|was|were) (?:not|none)\b", r"(?:is|are) clear",
)
UNCERTAIN_PRE = (
    r"may\b", r"might\b", r"could\b", r"possibl[ey]", r"probabl[ey]", r"likely", r"suspect\w*", r"suspicio\w*",
    r"concern\w* (?:for|of)", r"question\w*", r"equivocal", r"borderline", r"indeterminate", r"presumed",
    r"suggest\w*", r"worrisome", r"cannot", r"evaluat\w* for", r"correlat\w*", r"r/o", r"\?", r"vs\b", r"versus",
    r"(?:consider|considerations?)\b", r"atypical", r"compatible with", r"uncertain",
    r"obscur\w*",
)
UNCERTAIN_POST = (
    r"(?:is|are)?\s*(?:not|poorly|incompletely)\s+(?:well\s+)?(?:evaluated|assessed|excluded|visuali[sz]ed)",
    r"(?:is|are)?\s*(?:suspected|possible|questioned|likely|favou?red)", r"\?", r"(?:could|may|might)\b",
    r"versus\b", r"vs\b", r"or\b",
)
# Abnormal findings outside the 14 labels: any of them, positive or uncertain, means the report is not "No Finding".
OTHER_FINDINGS = (
    r"emphysema", r"hyperinflat", r"hyperexpan", r"copd", r"granuloma", r"calcifi", r"degenera", r"scoliosis",
    r"kyphosis", r"hernia", r"atherosclero", r"tortuous", r"osteopenia", r"osteophyt", r"spondylosis",
    r"blunt\w*", r"eventration", r"elevat\w*", r"bronchiectasis", r"fibrosis", r"fibrotic", r"hypoinflat",
    r"low lung volumes?", r"deformit", r"bullae|bullous", r"thickening", r"volume loss", r"cyst",
    r"chronic (?:lung|interstitial|obstructive)", r"pneumomediastinum", r"pneumoperitoneum", r"aneurysm",
    r"lymphadenopathy", r"adenopathy", r"tortuo", r"ectati", r"spurring", r"curvature", r"crowding",
    r"(?:decreased|low|reduced|diminished) (?:lung )?volumes?", r"post-?operative", r"post-?surgical",
)
# One plain name per finding, for sentences written by cxrl (negation-flipped reports, cxrl.data.text.negation).
CANONICAL: dict[str, str] = {
    "Enlarged Cardiomediastinum": "mediastinal widening", "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung opacity", "Lung Lesion": "lung nodule", "Edema": "pulmonary edema",
    "Consolidation": "consolidation", "Pneumonia": "pneumonia", "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax", "Pleural Effusion": "pleural effusion", "Pleural Other": "pleural thickening",
    "Fracture": "rib fracture", "Support Devices": "support device",
}
# A clause that opens with its negation ("No ...", "There is no ...", "No evidence of ..."): the cue to strip.
CLAUSE_NEGATION = r"(^|,\s+|;\s+)(there (?:is|are) )?no (?:evidence of )?"
