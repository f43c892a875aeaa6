"""Batch and video loops shared by the model scripts: one clear line per failure, a summary, progress, and
outputs that are complete or absent.

A script supplies what to do with one image (or frame); the loops own reading, error reporting, progress bars,
exit codes and the output files.

Exit codes: 0 every input processed; 1 some input failed (each one reported, the others processed);
130 interrupted by Ctrl-C (what was processed so far is kept, finalised).
"""
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

from util.arg_utils import plan_savepaths
from util.errors import AxError, InputError, OutputError
from util.file_utils import PendingOutput, output_error, write_json_atomic
from util.image_utils import SAMPLE_PORTRAIT_NAME, imread, imwrite, load_sample_portrait
from util.video_utils import AtomicVideoWriter, capture_fps, frame_count, is_webcam_index, open_capture

logger = logging.getLogger(__name__)

WINDOW_NAME = "frame"
EXIT_OK, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@contextlib.contextmanager
def progress_bar(total, quiet, unit):
    """tqdm bar (done / total, rate) on stderr; silent with ``quiet`` or when stderr is not a terminal, so that logs
    and pipes stay clean. While it shows, log lines are printed above it instead of through it."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    silent = quiet or not sys.stderr.isatty()
    with tqdm(total=total, unit=unit, disable=silent, leave=False, dynamic_ncols=True) as bar:
        with contextlib.nullcontext() if silent else logging_redirect_tqdm():
            yield bar


class InterruptsDeferred:
    """While active, Ctrl-C only sets ``received``: finalising outputs is never cut half-way. Main thread only
    (Python delivers signals there); elsewhere it does nothing."""

    def __init__(self):
        self.received = False
        self._installed = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def _note(self, signum, frame):
        self.received = True

    def __exit__(self, *exc_info):
        if self._installed:  # None: a handler not set from Python; the default then
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)
        return False


def _failure_line(name, error):
    """``name: reason`` for an AxError (whose message may already name the input), or for an unexpected error."""
    if isinstance(error, AxError):
        message = str(error)
        return message if str(name) in message else f"{name}: {message}"
    return f"{name}: internal error ({type(error).__name__}: {error}); run with --debug for the traceback"


def report_failure(name, error):
    logger.error("%s", _failure_line(name, error))
    if not isinstance(error, AxError):
        logger.debug("traceback of the failure above", exc_info=error)


class InputItem:
    """One image to process: a file path, or an in-memory sample with a display name."""

    def __init__(self, name, path=None, image=None):
        self.name, self.path, self._image = name, path, image

    @classmethod
    def from_path(cls, path):
        return cls(name=path, path=path)

    def load(self):
        return self._image if self._image is not None else imread(self.path)


def _process_item(item, process_one):
    """True when ``item`` was processed; a failure is reported in one line (bugs too: the batch goes on)."""
    try:
        process_one(item, item.load())
        return True
    except Exception as e:  # AxError: the input's fault; anything else (MemoryError, a bug): still only this item's
        report_failure(item.name, e)
        return False


def run_image_batch(items, process_one, *, quiet=False):
    """Calls ``process_one(item, image)`` for each item: a failing item is reported in one line and skipped.

    Ends with a summary line (several items, or any failure). Returns the exit code (module docstring)."""
    succeeded, failed, interrupted = 0, 0, False
    try:
        with progress_bar(len(items), quiet or len(items) < 2, "img") as bar:
            for item in items:
                if _process_item(item, process_one):
                    succeeded += 1
                else:
                    failed += 1
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        logger.warning("interrupted: %d image(s) succeeded, %d failed, %d not processed", succeeded, failed,
                       len(items) - succeeded - failed)
        return EXIT_INTERRUPTED
    if len(items) > 1 or failed:
        logger.log(logging.WARNING if failed else logging.INFO,
                   "%d image(s) succeeded, %d failed", succeeded, failed)
    return EXIT_SOME_FAILED if failed else EXIT_OK


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
    """A .jsonl file written line by line under a temporary name; ``close`` gives it its final name when it holds
    at least one line (an empty one is removed), ``discard`` removes it."""

    def __init__(self, path):
        self.path = path
        self.lines = 0
        self._pending = PendingOutput(path)
        with output_error(path):
            self._file = open(self._pending.tmp_path, "w", encoding="utf-8")

    def write(self, record):
        with output_error(self.path):
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")  # one write: never half a line
        self.lines += 1

    def close(self):
        with output_error(self.path):
            self._file.close()
        if self.lines:
            self._pending.commit()
        else:
            self._pending.discard()

    def discard(self):
        with contextlib.suppress(OSError):
            self._file.close()
        self._pending.discard()


class VideoOutputs:
    """The annotated video and the per-frame JSONL of one run. The video writer is created on the first frame, at
    that frame's real size (some captures report none, or a wrong one)."""

    def __init__(self, savepath, jsonl_path, fps):
        self.savepath, self.fps = savepath, fps
        self.video = None
        self.records = JsonLinesWriter(jsonl_path) if jsonl_path else None

    @property
    def wants_video(self):
        return self.savepath is not None

    def write(self, image, record):
        if self.savepath:
            if self.video is None:
                self.video = AtomicVideoWriter(self.savepath, image.shape[1], image.shape[0], self.fps)
            self.video.write(image)
        if self.records and record is not None:
            self.records.write(record)

    def _each(self):
        return [output for output in (self.video, self.records) if output is not None]

    def close(self):
        """Finalise what was written under the final names."""
        for output in self._each():
            output.close()

    def discard(self):
        for output in self._each():
            output.discard()


@dataclass
class VideoProgress:
    frames: int = 0  # frames done (analysed or failed, and written)
    failed: int = 0  # frames whose analysis failed (reported, written unannotated)
    stopped_by_user: bool = False
    interrupted: bool = False


def run_video(video, analyse_frame, render, *, savepath=None, jsonl_path=None, show=False, quiet=False):
    """Reads frames from a file or webcam: ``analyse_frame(frame, index) -> (result, record)`` and
    ``render(frame, result, mirror) -> image``.

    Writes the rendered frames to ``savepath`` (a video) and the records to ``jsonl_path`` when given. Webcams are
    shown mirrored (the saved video is not). ``q`` or closing the window stops. A frame whose analysis fails is
    reported and written unannotated (no JSONL line). Ctrl-C finalises what was written, then returns 130; any
    other exception discards the outputs, so that no earlier good file is replaced. Returns the exit code.
    """
    capture = open_capture(video)
    expected_frames = None if is_webcam_index(video) else frame_count(capture)
    progress = VideoProgress()
    try:
        outputs = VideoOutputs(savepath, jsonl_path, capture_fps(capture))
        try:
            with progress_bar(expected_frames, quiet or is_webcam_index(video), "frame") as bar:
                _read_frames(capture, video, analyse_frame, render, outputs, progress, show, bar)
        except KeyboardInterrupt:
            progress.interrupted = True
        except BaseException:
            outputs.discard()
            raise
        with InterruptsDeferred() as late_interrupt:
            outputs.close()
        progress.interrupted |= late_interrupt.received
    finally:
        capture.release()
        if show:
            cv2.destroyAllWindows()
    return _video_exit_code(video, progress, expected_frames, savepath)


def _read_frames(capture, video, analyse_frame, render, outputs, progress, show, bar):
    mirror = is_webcam_index(video)
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        index = progress.frames
        try:
            result, record = analyse_frame(frame, index)
            analysed = True
        except AxError as e:
            progress.failed += 1
            report_failure(f"{video} frame {index}", e)
            result, record, analysed = None, None, False

        def rendered(mirrored):  # a failed frame is kept as it is, so that the video keeps its timing
            if analysed:
                return render(frame, result, mirrored)
            return np.ascontiguousarray(frame[:, ::-1]) if mirrored else frame

        image = rendered(False) if outputs.wants_video else None
        with InterruptsDeferred() as interrupt:  # a frame and its JSONL line are written together or not at all
            outputs.write(image, record)
            progress.frames += 1
        if interrupt.received:
            raise KeyboardInterrupt
        bar.update(1)
        if show and _show_frame(rendered(mirror)):
            progress.stopped_by_user = True
            return


def _video_exit_code(video, progress, expected_frames, savepath):
    if progress.interrupted:
        kept = f", kept in {savepath}" if savepath and progress.frames else ""
        logger.warning("interrupted after %d frame(s)%s", progress.frames, kept)
        return EXIT_INTERRUPTED
    if progress.frames == 0:
        raise InputError(f"{video}: no frame could be read")
    # Containers give approximate frame counts; far fewer frames means the rest could not be decoded.
    if expected_frames and not progress.stopped_by_user and progress.frames < expected_frames * 0.98 - 1:
        logger.warning("%s: only %d of %d frame(s) could be read (damaged or truncated video?)", video,
                       progress.frames, expected_frames)
    logger.log(logging.WARNING if progress.failed else logging.INFO, "%d frame(s) processed, %d failed",
               progress.frames - progress.failed, progress.failed)
    return EXIT_SOME_FAILED if progress.failed else EXIT_OK


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
    # Several images with -w: all records also go to <output folder>/results.jsonl, written as they come.
    summary = None
    if args.write_json and len(items) > 1:
        folder = os.path.dirname(next(iter(savepaths.values()))) or "."
        summary = JsonLinesWriter(os.path.join(folder, "results.jsonl"))

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
            if summary:
                summary.write(record)

    try:
        exit_code = run_image_batch(items, process_one, quiet=args.quiet)
    except BaseException:
        if summary:
            summary.discard()
        raise
    if summary:
        with InterruptsDeferred() as late_interrupt:
            summary.close()
        if late_interrupt.received:
            exit_code = EXIT_INTERRUPTED
    return exit_code


def plan_savepaths_for(savepath, items):
    planned = plan_savepaths(savepath, [item.path or "sample" for item in items])
    return {id(item): path for item, path in zip(items, planned)}


def run_job_on_video(job, args):
    """The video loop; a video that cannot be read or written is reported in one line (exit code 1)."""
    video_out = args.savepath if os.path.splitext(args.savepath)[1].lower() in VIDEO_EXTENSIONS else None
    jsonl_path = output_sidecar(video_out or args.savepath, ".jsonl") if args.write_json else None

    def analyse_frame(frame, index):
        result = job.analyse(frame)
        return result, job.frame_record(index, result)

    try:
        return run_video(args.video, analyse_frame, job.render, savepath=video_out, jsonl_path=jsonl_path,
                         show=args.show, quiet=args.quiet)
    except (InputError, OutputError) as e:
        report_failure(args.video, e)
        return EXIT_SOME_FAILED
