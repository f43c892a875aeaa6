"""Batch and video loops shared by the model scripts: one clear line per failure, a summary, progress, and
outputs that are complete or absent.

A script supplies what to do with one image (or frame); the loops own reading, error reporting, progress bars,
exit codes and the video writer.
"""
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from util.arg_utils import plan_savepaths
from util.errors import AxError, InputError
from util.file_utils import atomic_output, write_json_atomic
from util.image_utils import SAMPLE_PORTRAIT_NAME, imread, imwrite, load_sample_portrait
from util.video_utils import AtomicVideoWriter, capture_fps, frame_count, is_webcam_index, open_capture

logger = logging.getLogger(__name__)

WINDOW_NAME = "frame"


def progress_bar(total, quiet, desc):
    from tqdm import tqdm

    # Silent when output is not a terminal, so that logs and pipes stay clean.
    return tqdm(total=total, desc=desc, unit="img" if desc == "images" else "frame",
                disable=quiet or not sys.stderr.isatty(), leave=False)


class InputItem:
    """One image to process: a file path, or an in-memory sample with a display name."""

    def __init__(self, name, path=None, image=None):
        self.name, self.path, self._image = name, path, image

    @classmethod
    def from_path(cls, path):
        return cls(name=path, path=path)

    def load(self):
        return self._image if self._image is not None else imread(self.path)


def run_image_batch(items, process_one, *, quiet=False):
    """Calls ``process_one(item, image)`` for each item; returns the exit code (1 if any failed, else 0)."""
    succeeded, failed = 0, 0
    with progress_bar(len(items), quiet or len(items) < 2, "images") as bar:
        for item in items:
            try:
                process_one(item, item.load())
                succeeded += 1
            except AxError as e:
                failed += 1
                logger.error("%s", e if item.name in str(e) else f"{item.name}: {e}")
            bar.update(1)
    if len(items) > 1 or failed:
        logger.log(logging.WARNING if failed else logging.INFO,
                   "%d image(s) succeeded, %d failed", succeeded, failed)
    return 1 if failed else 0


def benchmark(function, count):
    """Run ``function`` ``count`` times, log each run's and the mean time in ms; return the last result."""
    timings, result = [], None
    for _ in range(count):
        start = time.perf_counter()
        result = function()
        timings.append((time.perf_counter() - start) * 1e3)
        logger.info("\tprocessing time %.1f ms", timings[-1])
    logger.info("\tmean processing time %.1f ms (%d run(s))", float(np.mean(timings)), count)
    return result


class JsonLinesWriter:
    """A .jsonl file written under a temporary name and renamed when closed."""

    def __init__(self, path):
        self.path = path
        self._context = atomic_output(path)
        self._tmp_path = self._context.__enter__()
        self._file = open(self._tmp_path, "w", encoding="utf-8")

    def write(self, record):
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self, keep=True):
        self._file.close()
        if keep:
            self._context.__exit__(None, None, None)
        else:
            self._context.__exit__(InputError, InputError("discarded"), None)


def run_video(video, analyse_frame, render, *, savepath=None, jsonl_path=None, show=False, quiet=False):
    """Reads frames from a file or webcam: ``analyse_frame(frame, index) -> (result, record)`` and
    ``render(frame, result, mirror) -> image``.

    Writes the rendered frames to ``savepath`` (a video) and the records to ``jsonl_path`` when given. Webcams are
    shown mirrored (the saved video is not). ``q`` or closing the window stops. Ctrl-C finalises what was written,
    then exits non-zero.
    """
    capture = open_capture(video)
    webcam = is_webcam_index(video)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = AtomicVideoWriter(savepath, width, height, capture_fps(capture)) if savepath else None
    records = JsonLinesWriter(jsonl_path) if jsonl_path else None
    interrupted, index = False, 0
    try:
        with progress_bar(frame_count(capture), quiet or webcam, "frames") as bar:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                result, record = analyse_frame(frame, index)
                if writer:
                    writer.write(render(frame, result, False))
                if records:
                    records.write(record)
                if show and _show_frame(render(frame, result, webcam)):
                    break
                index += 1
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: keeping the %d frame(s) processed so far", index)
    finally:
        capture.release()
        if writer:
            writer.close()
        if records:
            records.close()
        if show:
            cv2.destroyAllWindows()
    if index == 0 and not interrupted:
        raise InputError(f"{video}: no frame could be read")
    logger.info("%d frame(s) processed", index)
    return 130 if interrupted else 0


def _show_frame(image):
    """Show a frame; True when the user asked to stop (q pressed or window closed)."""
    cv2.imshow(WINDOW_NAME, image)
    key = cv2.waitKey(1) & 0xFF
    return key == ord("q") or cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) < 1


def output_sidecar(path, ext):
    """``<path stem><ext>``: the JSON beside a saved image, the JSONL beside a saved video."""
    return os.path.splitext(path)[0] + ext


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")


@dataclass
class ModelJob:
    """What a model script does per image or frame; ``run_job`` owns the loops, files and exit codes.

    analyse(image) -> result; render(image, result, mirror) -> image; image_record(name, image, result) -> dict;
    frame_record(index, result) -> dict; report(name, result) prints the result (optional).
    """
    analyse: Callable
    render: Callable
    image_record: Callable
    frame_record: Callable
    report: Optional[Callable] = None


def input_items(paths):
    """InputItems for the given paths, or the scikit-image astronaut sample when there are none."""
    if paths:
        return [InputItem.from_path(path) for path in paths]
    return [InputItem(SAMPLE_PORTRAIT_NAME, image=load_sample_portrait())]


def run_job(job, args):
    """Runs ``job`` on ``args.video`` or ``args.input`` (ailia MODELS flags); returns the exit code."""
    if args.video is not None:
        return run_job_on_video(job, args)
    return run_job_on_images(job, args)


def run_job_on_images(job, args):
    items = input_items(args.input)
    savepaths = plan_savepaths_for(args.savepath, items)
    records = []

    def process_one(item, image):
        if args.benchmark:
            result = benchmark(lambda: job.analyse(image), args.benchmark_count)
        else:
            result = job.analyse(image)
        if job.report:
            job.report(item.name, result)
        savepath = savepaths[id(item)]
        imwrite(savepath, job.render(image, result, False))
        logger.info("saved %s", savepath)
        if args.write_json:
            record = job.image_record(item.name, image, result)
            write_json_atomic(output_sidecar(savepath, ".json"), record)
            records.append(record)

    exit_code = run_image_batch(items, process_one, quiet=args.quiet)
    if args.write_json and len(items) > 1 and records:
        folder = os.path.dirname(next(iter(savepaths.values()))) or "."
        jsonl = JsonLinesWriter(os.path.join(folder, "results.jsonl"))
        for record in records:
            jsonl.write(record)
        jsonl.close()
    return exit_code


def plan_savepaths_for(savepath, items):
    planned = plan_savepaths(savepath, [item.path or "sample" for item in items])
    return {id(item): path for item, path in zip(items, planned)}


def run_job_on_video(job, args):
    video_out = args.savepath if os.path.splitext(args.savepath)[1].lower() in VIDEO_EXTENSIONS else None
    jsonl_path = output_sidecar(video_out or args.savepath, ".jsonl") if args.write_json else None

    def analyse_frame(frame, index):
        result = job.analyse(frame)
        return result, job.frame_record(index, result)

    return run_video(args.video, analyse_frame, job.render, savepath=video_out, jsonl_path=jsonl_path,
                     show=args.show, quiet=args.quiet)
