#!/usr/bin/env python3
"""Demonstration (not a measurement): per-eye eyelids on constructed "hybrid" faces.

The shared data hold almost no hybrid faces (40 in the pool), so this script builds some: for pairs of labelled
photos, a face whose two eyes are single and a face whose two eyes are double, the double face's region around the
subject's LEFT eye (eye and brow) is aligned onto the single face (similarity transform fitted on that region's
Face Mesh landmarks) and blended in. Each composite then goes through the plugin with ``per_eye=True``; the
expected answer is right eye single, left eye double, type hybrid. Outputs: annotated images and a JSON summary in
--out (keep them out of the repository: they are derived from FairFace photos, CC BY 4.0).

    python3 scripts/demo_hybrid_eyelids.py --dataset ../shared/datasets/fairface-facial-features --pairs 12
"""
import argparse
import csv
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from face_recognition.ax_facial_features.constants import EYELIDS, LEFT_EYE_CONTOUR, SUBJECT_LEFT  # noqa: E402
from face_recognition.ax_facial_features.drawing import draw_results  # noqa: E402
from face_recognition.ax_facial_features.pipeline import FacialFeatures  # noqa: E402
from face_recognition.ax_facial_features.report import face_record  # noqa: E402
from scripts.training.datasets import refuse_holdout  # noqa: E402
from util.file_utils import write_json_atomic  # noqa: E402
from util.image_utils import imread, imwrite  # noqa: E402

# The subject's left eyebrow (Face Mesh topology), pasted with the eye so the crease-to-brow area stays coherent.
LEFT_EYEBROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
REGION = LEFT_EYE_CONTOUR + LEFT_EYEBROW


def pick_pairs(csv_path, count, seed):
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    single = [r["image"] for r in rows if r["eyelid_img_left"] == r["eyelid_img_right"] == "single"]
    double = [r["image"] for r in rows if r["eyelid_img_left"] == r["eyelid_img_right"] == "double"]
    rng = np.random.default_rng(seed)
    return list(zip(rng.permutation(single)[:count], rng.permutation(double)[:count]))


def composite(base_bgr, base_landmarks, donor_bgr, donor_landmarks):
    """The donor's left-eye region aligned onto the base face and blended with a feathered mask."""
    source = np.float32(donor_landmarks[list(REGION), :2])
    target = np.float32(base_landmarks[list(REGION), :2])
    transform, _ = cv2.estimateAffinePartial2D(source, target)
    height, width = base_bgr.shape[:2]
    warped = cv2.warpAffine(donor_bgr, transform, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((height, width), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(target.astype(np.int32)), 1.0)
    eye_width = np.ptp(target[:, 0])
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=max(1, int(eye_width * 0.15)))
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(1.0, eye_width * 0.08))[..., None]
    return (warped * mask + base_bgr * (1 - mask)).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="folder with images/ and labels_eyes.csv")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="hybrid_demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    images = os.path.join(args.dataset, "images")
    refuse_holdout(images)
    analyser = FacialFeatures((EYELIDS,), per_eye=True, force_onnx=True)
    os.makedirs(args.out, exist_ok=True)
    summary = []
    for base_name, donor_name in pick_pairs(os.path.join(args.dataset, "labels_eyes.csv"), args.pairs, args.seed):
        base, donor = imread(os.path.join(images, base_name)), imread(os.path.join(images, donor_name))
        base_faces, donor_faces = analyser.process(base), analyser.process(donor)
        if len(base_faces) != 1 or len(donor_faces) != 1:
            continue
        made = composite(base, base_faces[0].mesh.landmarks, donor, donor_faces[0].mesh.landmarks)
        faces = analyser.process(made)
        if len(faces) != 1:
            continue
        stem = f"{os.path.splitext(base_name)[0]}+{SUBJECT_LEFT}_eye_of_{os.path.splitext(donor_name)[0]}"
        imwrite(os.path.join(args.out, f"{stem}.png"), draw_results(made, faces, analyser.tasks))
        record = face_record(faces[0], analyser.tasks)
        summary.append({"composite": stem, "expected": {"right": "single", "left": "double", "type": "hybrid"},
                        "eyelids_per_eye": record.get("eyelids_per_eye"), "eyelids_type": record.get("eyelids_type"),
                        "base_alone": base_faces[0].eyelids_type, "donor_alone": donor_faces[0].eyelids_type})
        logging.info("%s: %s (base alone %s, donor alone %s)", stem, record.get("eyelids_type"),
                     base_faces[0].eyelids_type, donor_faces[0].eyelids_type)
    types = [s["eyelids_type"] for s in summary]
    write_json_atomic(os.path.join(args.out, "summary.json"), {
        "note": "constructed composites: a demonstration of the per-eye output, not a measured result",
        "composites": len(summary), "types": {t: types.count(t) for t in sorted(set(types))}, "items": summary})
    logging.info("%d composites: %s -> %s", len(summary), {t: types.count(t) for t in sorted(set(types))}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
