#!/usr/bin/env python3
"""External check of the facial-hair answers on CelebA's own attribute labels (evaluation only).

    python3 scripts/evaluate_celeba_facial_hair.py --dataset ../shared/eval/celeba-facial-hair --out celeba.json

CelebA labels (1 / -1) made outside this project, mapped as its README suggests: beard = ``no_beard == -1``,
moustache = ``mustache == 1``, "any facial hair" = either. CelebA has no mouth-side-hair label, so the seed's
Hamming score cannot be computed; reported instead, with 95 % bootstrap intervals: per-label precision, recall and
balanced accuracy of the plugin's labels, and the balanced accuracy of "any facial hair" (any label predicted).
Faces the detector misses are counted. Never train, tune thresholds or select models on this set.
"""
import argparse
import csv
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from face_recognition.ax_facial_features.constants import FACIAL_HAIR  # noqa: E402
from face_recognition.ax_facial_features.pipeline import FacialFeatures  # noqa: E402
from scripts.training.evaluation import predict_labelled_faces  # noqa: E402
from scripts.training.metrics import bootstrap_interval, json_ready  # noqa: E402
from util.file_utils import write_json_atomic  # noqa: E402

TRUTH = {"beard": lambda row: row["no_beard"] == "-1", "moustache": lambda row: row["mustache"] == "1"}


def read_labels(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    truth = {name: np.array([rule(row) for row in rows]) for name, rule in TRUTH.items()}
    return [row["image"] for row in rows], truth


def facial_hair_answer(face):
    result = face.results[FACIAL_HAIR]
    return set(result.labels), result.status


def predict(analyser, paths):
    """Labels predicted for the labelled (central) face of each image (None: no face found), and the facial-hair
    status."""
    answers = predict_labelled_faces(analyser, paths, summarise=facial_hair_answer, progress=lambda done, total: (
        done % 250 == 0 and logging.info("%d/%d images", done, total)))
    labels = [None if answers[path] is None else answers[path][0] for path in paths]
    statuses = [None if answers[path] is None else answers[path][1] for path in paths]
    return labels, statuses


def binary_report(truth, predicted, n_resamples):
    def balanced(t, p):
        return (np.mean(p[t]) + np.mean(~p[~t])) / 2 if t.any() and (~t).any() else np.nan

    def precision(t, p):
        return np.mean(t[p]) if p.any() else np.nan

    def recall(t, p):
        return np.mean(p[t]) if t.any() else np.nan

    report = {"positives": int(truth.sum()), "negatives": int((~truth).sum()), "predicted": int(predicted.sum())}
    for name, metric in (("balanced_accuracy", balanced), ("precision", precision), ("recall", recall)):
        estimate, low, high = bootstrap_interval(metric, [truth, predicted], n_resamples=n_resamples)
        report[name], report[f"{name}_ci95"] = estimate, [low, high]
    return report


def evaluate(labels, statuses, truth, n_resamples=1000, clear_only=False):
    found = np.array([l is not None and (not clear_only or s == "ok") for l, s in zip(labels, statuses)])
    predicted = {name: np.array([l is not None and name in l for l in labels])[found] for name in TRUTH}
    any_predicted = np.array([l is not None and bool(l) for l in labels])[found]
    report = {"faces": int(found.sum())}
    for name in TRUTH:
        report[name] = binary_report(truth[name][found], predicted[name], n_resamples)
    any_truth = (truth["beard"] | truth["moustache"])[found]
    report["any_facial_hair"] = binary_report(any_truth, any_predicted, n_resamples)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="folder with images/ and labels.csv (CelebA format)")
    parser.add_argument("--out", default="celeba_facial_hair.json")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--detector", choices=("short", "full"), default="short")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    names, truth = read_labels(os.path.join(args.dataset, "labels.csv"))
    analyser = FacialFeatures((FACIAL_HAIR,), detector=args.detector, force_onnx=True)
    labels, statuses = predict(analyser, [os.path.join(args.dataset, "images", n) for n in names])
    report = {"images": len(names), "missed_faces": sum(l is None for l in labels),
              "models": analyser.model_info(), "all_found_faces": evaluate(labels, statuses, truth, args.bootstrap),
              "clear_faces_only": evaluate(labels, statuses, truth, args.bootstrap, clear_only=True)}
    write_json_atomic(args.out, json_ready(report))
    for scope in ("all_found_faces", "clear_faces_only"):
        for name in (*TRUTH, "any_facial_hair"):
            r = report[scope][name]
            logging.info("%s %s: balanced accuracy %.3f [%.3f, %.3f], precision %.3f, recall %.3f (%d faces)",
                         scope, name, r["balanced_accuracy"], *r["balanced_accuracy_ci95"], r["precision"],
                         r["recall"], report[scope]["faces"])
    logging.info("missed faces: %d of %d; report: %s", report["missed_faces"], len(names), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
