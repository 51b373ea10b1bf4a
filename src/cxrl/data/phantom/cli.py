"""``cxrl phantom``: write a phantom dataset in the CheXpert or MIMIC-CXR-JPG layout."""

from __future__ import annotations

import argparse

from cxrl.data.phantom.effects import FORMAT, parse_effect
from cxrl.data.phantom.layouts import LAYOUTS, REPORT_SOURCES, write_dataset


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("phantom", help="write a phantom dataset in the CheXpert or MIMIC-CXR-JPG layout")
    p.add_argument("--out", required=True, help="new folder to write the dataset into")
    p.add_argument("--n", type=int, required=True, help="number of frontal images")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--layout", choices=LAYOUTS, default=None, help="default chexpert (mimic with --reports iu)")
    p.add_argument("--reports", choices=REPORT_SOURCES, default="phantom",
                   help="phantom: reports written from the phantom's truth (default); iu: real IU X-ray report texts "
                        "(even ids) paired with phantoms drawn from their MeSH findings, MIMIC layout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, default=None, help="number of patients (default n // 3)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores, at most 8)")
    p.add_argument("--subgroup-effect", action="append", default=[], metavar="FINDING:KEY=VALUE:VISIBILITY",
                   help=f"plant a subgroup difference: draw FINDING in only a share VISIBILITY of the positive images "
                   f"of the subgroup (repeatable; default none): {FORMAT}")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    layout = args.layout or ("mimic" if args.reports == "iu" else "chexpert")
    root = write_dataset(args.out, args.n, size=args.size, layout=layout, seed=args.seed,
                         patients=args.patients, workers=args.workers, reports=args.reports,
                         subgroup_effects=[parse_effect(e) for e in args.subgroup_effect])
    print(root)
    return 0
