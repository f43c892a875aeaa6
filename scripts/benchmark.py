#!/usr/bin/env python3
"""Speed of the plugin per stage, against the upstream algorithm and mediapipe, on inputs made from real photos.

    python3 scripts/benchmark.py                       # prints a table, writes benchmark.json
    python3 scripts/benchmark.py --runs 50 --out bench.json --manifest M.json

Scenes (from scikit-image's astronaut portrait): a 640x480 frame with 1 face; 640x480 with 4 faces (each at least a
quarter of the frame height); 1920x1080 with 1 large face; a 300-frame 640x480 video of a moving face. Per stage
median and p90 (decode, detect, mesh, crops, preprocess, each classifier, render), frames per second, warm-up
excluded; the upstream algorithm (scripts/upstream_reference.py) on the same models in the same run, with the
largest probability difference on stills; mediapipe's own Face Mesh against our detect + mesh.
"""
import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging: keep the table readable

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from face_recognition.ax_facial_features.drawing import draw_results  # noqa: E402
from face_recognition.ax_facial_features.pipeline import FacialFeatures, VideoAnalyser  # noqa: E402
from scripts.upstream_reference import UpstreamReference, max_probability_difference  # noqa: E402
from util.errors import ModelError  # noqa: E402
from util.file_utils import write_json_atomic  # noqa: E402
from util.image_utils import load_sample_portrait  # noqa: E402
from util.timing import StageTimer  # noqa: E402


def place(canvas_size, image, height, centre):
    """``image`` scaled to ``height`` px, pasted centred at ``centre`` on a grey canvas (width, height)."""
    width_c, height_c = canvas_size
    canvas = np.full((height_c, width_c, 3), 110, np.uint8)
    scale = height / image.shape[0]
    resized = cv2.resize(image, (int(image.shape[1] * scale), height), interpolation=cv2.INTER_AREA)
    x0, y0 = int(centre[0] - resized.shape[1] / 2), int(centre[1] - resized.shape[0] / 2)
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(width_c, x0 + resized.shape[1]), min(height_c, y0 + resized.shape[0])
    canvas[ys:ye, xs:xe] = resized[ys - y0:ye - y0, xs - x0:xe - x0]
    return canvas


def scenes():
    astronaut = load_sample_portrait()
    head = astronaut[0:320, 64:384]  # head and shoulders: the face fills most of it
    grid = np.vstack([np.hstack([cv2.resize(head, (320, 240))] * 2)] * 2)
    return {"640x480, 1 face": place((640, 480), astronaut, 480, (320, 240)),
            "640x480, 4 faces": grid,
            "1920x1080, 1 large face": place((1920, 1080), astronaut, 1080, (960, 540))}


def video_frames(count=300):
    base = scenes()["640x480, 1 face"]
    return [np.ascontiguousarray(np.roll(base, int(40 * np.sin(i / 15)), axis=1)) for i in range(count)]


def summarise(samples):
    values = np.asarray(samples, dtype=np.float64)
    return {"median_ms": round(float(np.median(values)), 2), "p90_ms": round(float(np.percentile(values, 90)), 2)}


def time_still(analyser, image, runs, warmup, process=None):
    """Decode (JPEG) -> ``process`` (default: the analyser's) -> render, per stage and in total: the same loop
    for our pipeline and the upstream reference, so their totals compare like for like."""
    process = process or analyser.process
    encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    stages, totals, faces = {}, [], None
    for i in range(warmup + runs):
        timer = StageTimer()
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        timer.lap("decode")
        faces = process(decoded)
        if process == analyser.process:
            timer.last.update(analyser.timer.last)
        else:
            timer.lap("process")
        timer._t = time.perf_counter()
        draw_results(decoded, faces, analyser.tasks)
        timer.lap("render")
        if i >= warmup:
            for stage, ms in timer.last.items():
                stages.setdefault(stage, []).append(ms)
            totals.append(sum(timer.last.values()))
    return {"faces": len(faces), "stages": {s: summarise(v) for s, v in stages.items()},
            "total": summarise(totals), "fps": round(1000 / float(np.median(totals)), 1)}


def time_calls(function, inputs, runs, warmup):
    samples, result = [], None
    for i in range(warmup + runs):
        image = inputs[i % len(inputs)]
        start = time.perf_counter()
        result = function(image)
        if i >= warmup:
            samples.append((time.perf_counter() - start) * 1e3)
    return summarise(samples), result


def mediapipe_mesh_time(image, runs, warmup):
    from face_detection.facemesh.mediapipe_reference import MediapipeFaceMesh

    with MediapipeFaceMesh(max_faces=8) as reference:
        timing, _ = time_calls(reference.landmarks, [image], runs, warmup)
    return timing


def run(args):
    analyser = FacialFeatures(manifest_path=args.manifest, force_onnx=True)
    reference = UpstreamReference(analyser)
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "models": analyser.model_info(), "runs": args.runs, "stills": {}}
    for name, image in scenes().items():
        ours = time_still(analyser, image, args.runs, args.warmup)
        upstream = time_still(analyser, image, args.runs, args.warmup, process=reference.process)
        upstream_faces = reference.process(image)
        mesh_ours, _ = time_calls(analyser.face_mesh.process, [image], args.runs, args.warmup)
        ours.update({
            "upstream": upstream,
            "speedup_vs_upstream": round(upstream["total"]["median_ms"] / ours["total"]["median_ms"], 2),
            "max_prob_diff_vs_upstream": max_probability_difference(analyser.process(image), upstream_faces),
            "detect_mesh": mesh_ours, "mediapipe_face_mesh": mediapipe_mesh_time(image, args.runs, args.warmup)})
        ours["detect_mesh_vs_mediapipe"] = round(mesh_ours["median_ms"] / ours["mediapipe_face_mesh"]["median_ms"], 2)
        report["stills"][name] = ours
    report["per_eye"] = time_per_eye(args, next(iter(scenes().values())))
    frames = video_frames(args.video_frames)
    with tempfile.TemporaryDirectory() as folder:  # decode from a real video file, as users do
        path = os.path.join(folder, "clip.avi")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
        for frame in frames:
            writer.write(frame)
        writer.release()
        report["video"] = {"frames": len(frames),
                           "tracking": time_video(path, VideoAnalyser(analyser).process),
                           "tracking_classify_every_3": time_video(
                               path, VideoAnalyser(analyser, classify_interval=3).process),
                           "upstream": time_video(path, reference.process)}
    video = report["video"]
    video["speedup_vs_upstream"] = round(video["tracking"]["fps"] / video["upstream"]["fps"], 2)
    video["speedup_classify_every_3_vs_upstream"] = round(
        video["tracking_classify_every_3"]["fps"] / video["upstream"]["fps"], 2)
    return report


def time_per_eye(args, image):
    """The 640x480 one-face scene with --per-eye (one more model pass: both eyes at 128x128)."""
    try:
        analyser = FacialFeatures(manifest_path=args.manifest, force_onnx=True, per_eye=True)
    except ModelError as e:
        return {"skipped": str(e)}
    return time_still(analyser, image, args.runs, args.warmup)


def time_video(path, process):
    capture = cv2.VideoCapture(path)
    samples = []
    start = time.perf_counter()
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        t = time.perf_counter()
        process(frame)
        samples.append((time.perf_counter() - t) * 1e3)
    elapsed = time.perf_counter() - start
    capture.release()
    return dict(summarise(samples), fps=round(len(samples) / elapsed, 1))


def print_table(report):
    print(f"machine: {report['machine']}")
    print("| scene | faces | total median / p90 ms | fps | upstream median ms | speed-up | max prob diff | "
          "detect+mesh ms | mediapipe ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in report["stills"].items():
        print(f"| {name} | {r['faces']} | {r['total']['median_ms']} / {r['total']['p90_ms']} | {r['fps']} | "
              f"{r['upstream']['total']['median_ms']} | {r['speedup_vs_upstream']}x | {r['max_prob_diff_vs_upstream']:.1e} | "
              f"{r['detect_mesh']['median_ms']} | {r['mediapipe_face_mesh']['median_ms']} | "
              f"{r['detect_mesh_vs_mediapipe']}x |")
    first = next(iter(report["stills"].values()))
    print("stages (640x480, 1 face), median / p90 ms: " + ", ".join(
        f"{s} {v['median_ms']}/{v['p90_ms']}" for s, v in first["stages"].items()))
    per_eye = report.get("per_eye", {})
    if "total" in per_eye:
        print(f"with --per-eye (640x480, 1 face): total median {per_eye['total']['median_ms']} ms, stages " +
              ", ".join(f"{s} {v['median_ms']}" for s, v in per_eye["stages"].items()))
    v = report["video"]
    print(f"video {v['frames']} frames: tracking {v['tracking']['fps']} fps, upstream {v['upstream']['fps']} fps, "
          f"speed-up {v['speedup_vs_upstream']}x; tracking + classify every 3rd frame (CLI default) "
          f"{v['tracking_classify_every_3']['fps']} fps, {v['speedup_classify_every_3_vs_upstream']}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--video_frames", type=int, default=300)
    parser.add_argument("--manifest", default=None, help="classifier manifest (default: the plugin's)")
    parser.add_argument("--out", default="benchmark.json")
    args = parser.parse_args(argv)
    report = run(args)
    write_json_atomic(args.out, report)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
