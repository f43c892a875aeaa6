"""Video and webcam capture, and a video writer that leaves a complete file or none."""
import os

import cv2

from util.errors import InputError
from util.file_utils import temporary_path_for


def is_webcam_index(video):
    return isinstance(video, int) or (isinstance(video, str) and video.isdigit())


def open_capture(video):
    """cv2.VideoCapture for a file path or a webcam index ('0'); InputError when it cannot be opened."""
    if is_webcam_index(video):
        capture = cv2.VideoCapture(int(video))
        if not capture.isOpened():
            raise InputError(f"webcam {video}: cannot be opened (no such camera?)")
        return capture
    if not os.path.isfile(video):
        raise InputError(f"{video}: no such video file")
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        capture.release()
        raise InputError(f"{video}: cannot be opened as a video")
    return capture


def capture_fps(capture, default=30.0):
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if fps and 1.0 <= fps <= 240.0 else default


def frame_count(capture):
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return count if count > 0 else None


class AtomicVideoWriter:
    """cv2.VideoWriter writing to `<stem>.tmp<ext>`; ``close`` finalises and renames, ``discard`` deletes."""

    FOURCC_BY_EXT = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}

    def __init__(self, path, width, height, fps):
        self.path = path
        self.tmp_path = temporary_path_for(path)
        ext = os.path.splitext(path)[1].lower()
        fourcc = cv2.VideoWriter_fourcc(*self.FOURCC_BY_EXT.get(ext, "mp4v"))
        os.makedirs(os.path.dirname(self.tmp_path), exist_ok=True)
        self.writer = cv2.VideoWriter(self.tmp_path, fourcc, fps, (width, height))
        if not self.writer.isOpened():
            raise InputError(f"{path}: cannot write a video with extension '{ext}'")
        self.frames_written = 0

    def write(self, frame_bgr):
        self.writer.write(frame_bgr)
        self.frames_written += 1

    def close(self):
        """Finalise the frames written so far into a valid file under the final name."""
        self.writer.release()
        if self.frames_written:
            os.replace(self.tmp_path, self.path)
        else:
            self.discard()

    def discard(self):
        self.writer.release()
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)
