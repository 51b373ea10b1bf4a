"""How often the report labeler reads a negation-flipped IU X-ray report (cxrl.data.text.negation) with every
finding's polarity reversed: stated or hedged -> denied, denied -> stated. Even ids only (development).

    python scripts/negation_iu.py            # prints the share per finding and overall, and a few misses
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrl.data.text.iu_reports import read_iu_reports, report_text
from cxrl.data.text.labeler import NO_FINDING, label_report
from cxrl.data.text.negation import negate_report


def main() -> None:
    reports = read_iu_reports()
    texts = report_text(reports[reports["id"] % 2 == 0]).dropna()
    counts: dict[str, list[int]] = {}
    misses, unflipped = [], 0
    for text in texts:
        flip = negate_report(text)
        if flip is None:
            unflipped += 1
            continue
        after = label_report(flip)
        for finding, label in label_report(text).items():
            if finding == NO_FINDING or np.isnan(label):
                continue
            reversed_ = after[finding] == (1.0 if label == 0 else 0.0)
            counts.setdefault(finding, []).append(int(reversed_))
            if not reversed_ and len(misses) < 5:
                misses.append(f"{finding} {label:+.0f} -> {after[finding]:+.0f}: {flip[:140]}")
    table = pd.DataFrame({f: {"mentions": len(v), "reversed": np.mean(v)} for f, v in counts.items()}).T
    total = sum(len(v) for v in counts.values())
    print(f"{len(texts)} even-id reports, {unflipped} name no finding (no flip)")
    print(table.to_string(float_format="{:.3f}".format))
    print(f"all findings: {sum(map(sum, counts.values()))} of {total} mentions reversed "
          f"({sum(map(sum, counts.values())) / total:.3f})")
    print("misses:", *misses, sep="\n  ")


if __name__ == "__main__":
    main()
