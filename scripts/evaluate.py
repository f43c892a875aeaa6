#!/usr/bin/env python3
"""Evaluate the whole plugin (detection -> mesh -> crops -> shipped models) on a labelled image folder.

    python3 scripts/evaluate.py --dataset ../shared/datasets/fairface-facial-features --out eval.json
    python3 scripts/evaluate.py --images DIR --eyes-csv labels_eyes.csv --hair-csv labels_facial_hair.csv
    python3 scripts/evaluate.py --dataset DIR --per-eye     # also per-eye eyelids and the face's eyelid type

The CSV format is the training toolkit's (scripts/training/README.md). Evaluation may read holdout folders.
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from face_recognition.ax_facial_features.pipeline import FacialFeatures  # noqa: E402
from scripts.training.datasets import DEFAULT_CSV  # noqa: E402
from scripts.training.evaluation import DEFAULT_GROUP_COLUMNS, evaluate  # noqa: E402
from util.errors import AxError  # noqa: E402
from util.file_utils import write_json_atomic  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="folder with images/ and the default CSV names")
    parser.add_argument("--images", help="image folder (default: <dataset>/images)")
    parser.add_argument("--eyes-csv", help="eyelid / eyelash labels (default: <dataset>/labels_eyes.csv)")
    parser.add_argument("--hair-csv", help="facial hair labels (default: <dataset>/labels_facial_hair.csv)")
    parser.add_argument("--out", default="evaluation.json", help="JSON report path")
    parser.add_argument("--groups", nargs="*", default=list(DEFAULT_GROUP_COLUMNS), help="CSV columns to split by")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--detector", choices=("short", "full"), default="short")
    parser.add_argument("--manifest", default=None, help="classifier manifest (default: the plugin's)")
    parser.add_argument("--model_dir", default=None)
    parser.add_argument("--per-eye", action="store_true",
                        help="also evaluate per-eye eyelids (needs a per-eye model in the manifest)")
    return parser.parse_args(argv)


def label_sources(args):
    images = args.images or (os.path.join(args.dataset, "images") if args.dataset else None)
    sources = {}
    for group, explicit in (("eyes", args.eyes_csv), ("facial_hair", args.hair_csv)):
        csv_path = explicit or (os.path.join(args.dataset, DEFAULT_CSV[group]) if args.dataset else None)
        if csv_path and os.path.isfile(csv_path):
            sources[group] = (csv_path, images)
    return sources


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    sources = label_sources(args)
    if not sources or not all(images for _, images in sources.values()):
        logging.error("give --dataset, or --images with --eyes-csv and/or --hair-csv (existing files)")
        return 2
    try:
        analyser = FacialFeatures(detector=args.detector, manifest_path=args.manifest, model_dir=args.model_dir,
                                  force_onnx=True, per_eye=args.per_eye)
        report = evaluate(analyser, sources, args.groups, args.bootstrap,
                          progress=lambda done, total: done % 250 == 0 and logging.info("%d/%d images", done, total))
    except AxError as e:
        logging.error("%s", e)
        return 2
    write_json_atomic(args.out, report)
    for task, entry in report["tasks"].items():
        log_headline(task, entry.get("overall", {}), f"n={entry['scored']}, missed faces {entry['missed_faces']}")
        unclear = entry.get("unclear", {})
        log_headline(f"{task} (clear faces only)", unclear.get("overall", {}),
                     f"n={unclear.get('clear')}, coverage {unclear.get('coverage') or 0:.3f}")
    per_eye = report.get("per_eye")
    if per_eye:
        log_headline("per-eye eyelids (each eye)", per_eye["eyes"].get("overall", {}), f"n={per_eye['eyes']['scored']}")
        face_type = per_eye["face_type"]["all"]
        log_headline("eyelid type (per eye, double/single/hybrid)", face_type, f"n={face_type['count']}")
        agreement = per_eye["agreement_with_face_model"]
        log_headline("per-eye type vs face-level eyelids model", agreement, f"n={agreement['faces']}")
    logging.info("report: %s", args.out)
    return 0


def log_headline(title, metrics, counts):
    """One line per interval-carrying metric (accuracy only when it is the only one)."""
    keys = [k for k in metrics if k.endswith("_ci95")]
    for key in [k for k in keys if not k.startswith("accuracy")] or keys:
        name = key[:-5]
        low, high = metrics[key]
        logging.info("%s: %s %.3f (95%% CI %.3f-%.3f), %s", title, name, metrics[name], low, high, counts)


if __name__ == "__main__":
    sys.exit(main())
