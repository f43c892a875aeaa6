"""Video and webcam capture, and a video writer that leaves a complete file or none.

OpenCV's and FFmpeg's console messages are silenced (see util.image_utils), so that a camera or file that cannot
be opened is reported as one line of ours.
"""
import os

import cv2

from util.errors import InputError, OutputError
from util.file_utils import PendingOutput
from util.image_utils import silence_opencv_logging

silence_opencv_logging()  # before the first capture (importing util.image_utils also quietens FFmpeg)


def is_webcam_index(video):
    return isinstance(video, int) or (isinstance(video, str) and video.isdigit())


def _has_frame_size(capture):
    return capture.get(cv2.CAP_PROP_FRAME_WIDTH) > 0 and capture.get(cv2.CAP_PROP_FRAME_HEIGHT) > 0


def open_capture(video):
    """cv2.VideoCapture for a file path or a webcam index ('0'); InputError when it cannot be opened."""
    if is_webcam_index(video):
        capture = cv2.VideoCapture(int(video))
        if not capture.isOpened():
            capture.release()
            raise InputError(f"webcam {video}: cannot be opened (no such camera, or it is in use)")
        return capture
    if not os.path.exists(video):
        raise InputError(f"{video}: no such video file")
    if not os.path.isfile(video):
        raise InputError(f"{video}: not a video file")
    try:
        with open(video, "rb") as f:
            f.read(1)
    except OSError as e:  # OpenCV would only say "cannot be opened"; the OS knows why
        raise InputError(f"{video}: cannot be read ({e.strerror or e})") from None
    capture = cv2.VideoCapture(video)
    # FFmpeg "opens" some non-videos (a text file named .jpg) with a 0x0 frame size.
    if not capture.isOpened() or not _has_frame_size(capture):
        capture.release()
        raise InputError(f"{video}: cannot be opened as a video (not a video file, or an unsupported codec)")
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
        self.size = (width, height)
        self._pending = PendingOutput(path)
        self.tmp_path = self._pending.tmp_path
        ext = os.path.splitext(path)[1].lower()
        fourcc = cv2.VideoWriter_fourcc(*self.FOURCC_BY_EXT.get(ext, "mp4v"))
        self.writer = cv2.VideoWriter(self.tmp_path, fourcc, fps, (width, height))
        if not self.writer.isOpened():
            self.discard()
            raise OutputError(f"{path}: cannot write a {width}x{height} video with extension '{ext}'")
        self.frames_written = 0

    def write(self, frame_bgr):
        if (frame_bgr.shape[1], frame_bgr.shape[0]) != self.size:  # OpenCV would silently drop the frame
            frame_bgr = cv2.resize(frame_bgr, self.size)
        self.writer.write(frame_bgr)
        self.frames_written += 1

    def close(self):
        """Finalise the frames written so far into a valid file under the final name."""
        self.writer.release()
        if self.frames_written:
            self._pending.commit()
        else:
            self._pending.discard()

    def discard(self):
        self.writer.release()
        self._pending.discard()
