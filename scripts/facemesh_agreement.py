#!/usr/bin/env python3
"""Agreement of face_detection/facemesh with mediapipe's own Face Mesh (same weights, mediapipe's graph).

    python3 scripts/facemesh_agreement.py                         # astronaut variants + 200 FairFace photos
    python3 scripts/facemesh_agreement.py --images DIR --limit 0  # every image of DIR

Prints, per image set: images, faces found by each side, images where the counts differ, and the landmark error
in image pixels (mean over each face's 468 points: mean / median / worst face; worst single point; mean |z|).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from face_detection.facemesh.mediapipe_reference import MediapipeFaceMesh, landmark_errors  # noqa: E402
from face_detection.facemesh.pipeline import FaceMesh  # noqa: E402
from util.image_utils import imread, load_sample_portrait  # noqa: E402

DEFAULT_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "shared", "datasets", "fairface-facial-features", "images")


def astronaut_variants():
    astronaut = load_sample_portrait()
    head = astronaut[0:320, 64:384]
    turn = cv2.getRotationMatrix2D((256, 256), 25, 1.0)
    return {"astronaut": astronaut,
            "astronaut rotated 25 deg": cv2.warpAffine(astronaut, turn, (512, 512), borderMode=cv2.BORDER_REFLECT),
            "2x2 grid of astronaut heads": np.vstack([np.hstack([head, head])] * 2)}


def compare(named_images, ours, reference):
    """Summary lines for one set of (name, image-or-path) pairs."""
    counts, mismatches, errors = [0, 0], [], []
    for name, image in named_images:
        image = imread(image) if isinstance(image, str) else image
        faces, references = ours.process(image), reference.landmarks(image)
        counts[0] += len(faces)
        counts[1] += len(references)
        if len(faces) != len(references):
            mismatches.append(f"{name}: ours {len(faces)}, mediapipe {len(references)}")
        errors += landmark_errors(faces, references)
    lines = [f"images {len(named_images)}, faces ours {counts[0]} / mediapipe {counts[1]}, "
             f"images with different counts {len(mismatches)}"] + [f"  {m}" for m in mismatches[:10]]
    if errors:
        means = np.array([e.mean_xy for e in errors])
        lines.append(f"landmark error px: mean {means.mean():.4f}, median {np.median(means):.4f}, "
                     f"worst face {means.max():.4f}, worst point {max(e.max_xy for e in errors):.4f}, "
                     f"mean |dz| {np.mean([e.mean_z for e in errors]):.4f}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=DEFAULT_IMAGES, help="folder of face photos")
    parser.add_argument("--limit", type=int, default=200, help="first N images, sorted by name (0: all)")
    parser.add_argument("--detector", choices=("short",), default="short",
                        help="mediapipe's FaceMesh only uses the short-range detector")
    args = parser.parse_args(argv)
    ours = FaceMesh(detector=args.detector, force_onnx=True)
    with MediapipeFaceMesh(max_faces=4) as reference:
        for name, image in astronaut_variants().items():
            print(f"[{name}] " + " | ".join(compare([(name, image)], ours, reference)))
        if os.path.isdir(args.images):
            paths = sorted(os.path.join(args.images, n) for n in os.listdir(args.images)
                           if n.lower().endswith((".jpg", ".jpeg", ".png")))
            paths = paths[:args.limit] if args.limit > 0 else paths
            print(f"[{args.images}]")
            print("\n".join(compare([(p, p) for p in paths], ours, reference)))
        else:
            print(f"{args.images}: not found, photo comparison skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
