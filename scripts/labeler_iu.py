"""Score the report labeler against the MeSH terms of the IU X-ray reports (torchxrayvision's NLMCXR_reports.tgz).

Even numeric ids are for development and tuning; odd ids are held out for the final evaluation only.
Prints per-label precision, recall, F1 and support twice: positive = label 1 ("strict") and positive = 1 or -1
("uncertain as positive"), plus the mean F1 of the five CheXpert competition findings.

    python scripts/labeler_iu.py --ids even
    python scripts/labeler_iu.py --ids even --baseline    # keyword mentions, no negation/uncertainty cues
"""

from __future__ import annotations

import argparse

import pandas as pd

from cxrl.data.text.iu_reports import evaluable, label_agreement, mesh_label_matrix, read_iu_reports, report_text
from cxrl.data.text.labeler import label_reports

COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", choices=("even", "odd"), required=True, help="even: development; odd: evaluation")
    parser.add_argument("--baseline", action="store_true", help="score keyword mentions without negation cues")
    parser.add_argument("--reports", default=None, help="NLMCXR_reports.tgz (default: torchxrayvision's)")
    args = parser.parse_args()
    reports = evaluable(read_iu_reports(args.reports))
    reports = reports[reports["id"] % 2 == (0 if args.ids == "even" else 1)]
    predicted = label_reports(report_text(reports), progress=True, cues=not args.baseline)
    reference = mesh_label_matrix(reports["mesh_major"])
    print(f"{len(reports)} {args.ids}-id reports{' (keyword baseline)' if args.baseline else ''}")
    pd.set_option("display.float_format", "{:.3f}".format)
    for name, uncertain_positive in (("strict: positive = 1", False), ("uncertain as positive: 1 or -1", True)):
        table = label_agreement(predicted, reference, uncertain_positive)
        print(f"\n{name}\n{table.to_string()}")
        print(f"mean F1 of {', '.join(COMPETITION)}: {table.loc[list(COMPETITION), 'f1'].mean():.3f}")


if __name__ == "__main__":
    main()
