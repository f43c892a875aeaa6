"""Image reading that works for any path and any common pixel format.

``imread`` always returns BGR uint8 HxWx3 (OpenCV order), whatever the file holds: grayscale, 16-bit, RGBA,
palette. Failures raise ``InputError`` with one line naming the file and the reason.
"""
import os

import cv2
import numpy as np

from util.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Above this many pixels an image is refused rather than risking the process being killed for memory
# (100 MP: an 8000x6000 photo is 48 MP and passes; decoding needs about 3 bytes per pixel).
MAX_IMAGE_PIXELS = 100_000_000


def is_image_path(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _read_bytes(path):
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not an image")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise InputError(f"{path}: empty file (0 bytes)")
    return data


def _looks_truncated(data):
    # libjpeg decodes a cut JPEG into a grey-filled image with only a warning; a complete JPEG ends with EOI.
    if data[:2] == b"\xff\xd8":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    # A complete PNG ends with its IEND chunk.
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-32:]
    return False


def to_bgr_uint8(image):
    """Convert any decoded image (gray, 16-bit, float, RGBA/BGRA) to BGR uint8 HxWx3."""
    if image is None or image.size == 0:
        raise InputError("empty image")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(np.nan_to_num(image) * 255.0, 0, 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3:
        raise InputError(f"unsupported image shape {image.shape}")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(image)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise InputError(f"unsupported number of channels: {channels}")


def imread(path):
    """Read an image file (any path, unicode included) as BGR uint8 HxWx3, or raise InputError."""
    data = _read_bytes(path)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if _looks_truncated(data):
        raise InputError(f"{path}: truncated or corrupted image file")
    # JPEG: decode in colour so that EXIF orientation is applied, as photo viewers do. Others: unchanged, so that
    # 16-bit and alpha are converted by to_bgr_uint8 rather than by OpenCV's lossy defaults.
    flags = cv2.IMREAD_COLOR if data[:2] == b"\xff\xd8" else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(buffer, flags)
    if image is None:
        raise InputError(f"{path}: not a readable image")
    if image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        raise InputError(f"{path}: image too large ({image.shape[1]}x{image.shape[0]}, "
                         f"limit {MAX_IMAGE_PIXELS // 1_000_000} megapixels)")
    try:
        return to_bgr_uint8(image)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def imwrite(path, image_bgr):
    """Write an image atomically (unicode-safe); the extension chooses the format."""
    from util.file_utils import atomic_output

    ext = os.path.splitext(path)[1] or ".png"
    ok, encoded = cv2.imencode(ext, image_bgr)
    if not ok:
        raise InputError(f"{path}: cannot encode an image with extension '{ext}'")
    with atomic_output(path) as tmp_path:
        encoded.tofile(tmp_path)


def load_sample_portrait():
    """The public-domain astronaut portrait shipped by scikit-image, as BGR uint8."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


SAMPLE_PORTRAIT_NAME = "astronaut (scikit-image sample)"
