#!/usr/bin/env python3
"""Soak test: a long video through the plugin's real video loop, checking that memory stays flat.

    python3 scripts/soak.py                            # 10,000 frames, peak RSS at frame 1,000 vs 10,000
    python3 scripts/soak.py --frames 2000 --checkpoint 200 --manifest M.json --out soak.json

The video is generated: each frame holds one real face photo (FairFace crops from ../shared when present, else
scikit-image's astronaut), scaled so that the face spans at least a quarter of the frame, drifting across it and
replaced by another photo every ``--scene_frames`` frames (so faces are lost, re-detected and given new tracks).
It is processed by ``util.runner.run_video`` with the plugin's video job (tracking, crops, classifiers, the
annotated video writer and the JSONL file), exactly as ``ax_facial_features.py -v`` does.

Peak RSS (``ru_maxrss``) is sampled at every checkpoint; the run passes (exit 0) when the peak at the last frame is
within ``--tolerance`` (5 %) of the peak at the first checkpoint. Until the project's own classifiers are installed
(``manifest.json`` lists none), the tiny contract classifiers of tests/contract_models.py stand in for them: the
loop, detector, Face Mesh, tracker, crops and writers are the real ones.
"""
import argparse
import glob
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from face_recognition.ax_facial_features.app import make_job  # noqa: E402
from face_recognition.ax_facial_features.classifiers import DEFAULT_MANIFEST, load_manifest  # noqa: E402
from face_recognition.ax_facial_features.pipeline import FacialFeatures  # noqa: E402
from util.file_utils import write_json_atomic  # noqa: E402
from util.image_utils import imread, load_sample_portrait  # noqa: E402
from util.runner import run_video  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAIRFACE_IMAGES = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets", "fairface-facial-features", "images")
# FairFace's 224 px crops are tight (the detector's face box is about 90 % of the photo's height): photos at half
# the frame height give faces of about 45 % of it, with room to drift (the run reports the smallest face found).
PHOTO_HEIGHT_FRACTION = 0.5


def face_photos(limit=50):
    """Real face photos (BGR): FairFace crops when the shared data is present, else the astronaut's head."""
    paths = sorted(glob.glob(os.path.join(FAIRFACE_IMAGES, "*.jpg")))[:limit]
    if paths:
        return [imread(path) for path in paths]
    # The astronaut's face box is about 95 px tall at (178-273, 83-178): a 160 px crop around it keeps the face at
    # about 60 % of the photo, so 30 % of the frame.
    portrait = load_sample_portrait()
    return [portrait[50:210, 145:305]]


def compose_frame(photo, frame_size, phase):
    """One frame: ``photo`` at PHOTO_HEIGHT_FRACTION of the frame height, drifting left-right with ``phase``."""
    width, height = frame_size
    frame = np.full((height, width, 3), 96, np.uint8)
    side = int(height * PHOTO_HEIGHT_FRACTION)
    resized = cv2.resize(photo, (side * photo.shape[1] // photo.shape[0], side), interpolation=cv2.INTER_AREA)
    resized = resized[:, :width]
    travel = width - resized.shape[1]
    x = int(travel * (0.5 + 0.5 * np.sin(phase)))
    y = (height - side) // 2
    frame[y:y + side, x:x + resized.shape[1]] = resized
    return frame


def write_soak_video(path, frames, frame_size, scene_frames, fps=25):
    photos = face_photos()
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, frame_size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    for index in range(frames):
        photo = photos[(index // scene_frames) % len(photos)]
        writer.write(compose_frame(photo, frame_size, phase=index * 0.05))
    writer.release()
    return len(photos)


def default_manifest(workdir):
    """The plugin's manifest when it lists its own classifiers, else the tiny contract classifiers."""
    if load_manifest(DEFAULT_MANIFEST).get("own"):
        return DEFAULT_MANIFEST
    from tests.contract_models import build_contract_models

    return build_contract_models(os.path.join(workdir, "contract_models"))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def current_rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class FaceStats:
    """Frames with a face, and the smallest face (detection box height / frame height) over the run."""

    def __init__(self):
        self.frames_with_face = 0
        self.smallest_face = None

    def add(self, faces, frame_height):
        if faces:
            self.frames_with_face += 1
            heights = [(face.mesh.bbox[3] - face.mesh.bbox[1]) / frame_height for face in faces]
            self.smallest_face = min([*heights, self.smallest_face or 1.0])


def run_soak(video, workdir, manifest, checkpoints, smoothing=0.5):
    """Runs the plugin's video job on ``video``; returns ({frame: {"peak_rss_mb", "rss_mb"}} at each checkpoint
    (frame numbers counted from 1), the exit code, FaceStats)."""
    analyser = FacialFeatures(manifest_path=manifest, force_onnx=True)
    job = make_job(analyser, video=True, smoothing=smoothing)
    samples, stats = {}, FaceStats()

    def analyse_frame(frame, index):
        faces = job.analyse(frame)
        stats.add(faces, frame.shape[0])
        if index + 1 in checkpoints:
            samples[index + 1] = {"peak_rss_mb": round(peak_rss_mb(), 1), "rss_mb": round(current_rss_mb(), 1)}
        return faces, job.frame_record(index, faces)

    exit_code = run_video(video, analyse_frame, job.render, savepath=os.path.join(workdir, "soak_annotated.mp4"),
                          jsonl_path=os.path.join(workdir, "soak_annotated.jsonl"), quiet=True)
    return samples, exit_code, stats


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--checkpoint", type=int, default=1_000, help="first checkpoint; later ones every this many")
    parser.add_argument("--size", default="320x240", help="frame WIDTHxHEIGHT")
    parser.add_argument("--scene_frames", type=int, default=100, help="frames per photo")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed peak RSS growth, first to last")
    parser.add_argument("--manifest", default=None, help="classifier manifest (default: see the docstring)")
    parser.add_argument("--workdir", default=None, help="where the video and outputs go (default: a temp folder)")
    parser.add_argument("--out", default=None, help="also write the report as JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    frame_size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="soak_") as scratch:
        workdir = args.workdir or scratch
        os.makedirs(workdir, exist_ok=True)
        video = os.path.join(workdir, "soak_input.mp4")
        start = time.perf_counter()
        photos = write_soak_video(video, args.frames, frame_size, args.scene_frames)
        generated_s = time.perf_counter() - start
        checkpoints = sorted(set(range(args.checkpoint, args.frames + 1, args.checkpoint)) | {args.frames})
        start = time.perf_counter()
        samples, exit_code, stats = run_soak(video, workdir, args.manifest or default_manifest(workdir),
                                             set(checkpoints))
        processed_s = time.perf_counter() - start
    first, last = samples[checkpoints[0]], samples[checkpoints[-1]]
    growth = last["peak_rss_mb"] / first["peak_rss_mb"] - 1
    report = {"frames": args.frames, "frame_size": list(frame_size), "photos": photos,
              "frames_with_face": stats.frames_with_face,
              "smallest_face_height_fraction": round(stats.smallest_face or 0.0, 3),
              "video_exit_code": exit_code, "generate_s": round(generated_s, 1), "process_s": round(processed_s, 1),
              "fps": round(args.frames / processed_s, 1), "checkpoints": samples,
              "peak_rss_growth": round(growth, 4), "tolerance": args.tolerance,
              "flat": bool(growth <= args.tolerance and exit_code == 0)}
    for frame in checkpoints:
        print(f"frame {frame:>6}: peak RSS {samples[frame]['peak_rss_mb']:8.1f} MB, "
              f"current RSS {samples[frame]['rss_mb']:8.1f} MB")
    print(f"{args.frames} frames ({stats.frames_with_face} with a face, smallest face "
          f"{(stats.smallest_face or 0) * 100:.0f} % of the frame height) in {processed_s:.0f} s")
    print(f"peak RSS at frame {checkpoints[0]} "
          f"{first['peak_rss_mb']:.1f} MB vs frame {checkpoints[-1]} {last['peak_rss_mb']:.1f} MB: "
          f"{growth * 100:+.2f} % ({'flat' if report['flat'] else 'NOT flat'}, tolerance "
          f"{args.tolerance * 100:.0f} %)")
    if args.out:
        write_json_atomic(args.out, report)
    return 0 if report["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
