"""Image reading that works for any path and any common pixel format.

``imread`` always returns BGR uint8 HxWx3 (OpenCV order), whatever the file holds: grayscale, 16-bit, RGBA,
palette. Failures raise ``InputError`` with one line naming the file and the reason. Size limits are checked from
the file header before decoding, so a huge image is refused instead of exhausting memory.

Importing this module also keeps OpenCV's own console messages (``[ WARN:0@...]`` lines, FFmpeg and libjpeg/libpng
warnings) off the console: the project reports each failure as one line of its own.
"""
import contextlib
import io
import logging
import os
import tempfile
import warnings

# FFmpeg (inside OpenCV's video I/O) reads this when first used: quiet, unless the user asked for something else.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from util.errors import InputError  # noqa: E402
from util.file_utils import atomic_output, output_error  # noqa: E402

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# Above this many pixels an image is refused rather than risking the process being killed for memory
# (100 MP: an 8000x6000 photo is 48 MP and passes; decoding needs about 3 bytes per pixel).
MAX_IMAGE_PIXELS = 100_000_000
# No supported image of at most MAX_IMAGE_PIXELS is larger than this on disk (16-bit RGBA uncompressed: 8 B/px).
MAX_IMAGE_FILE_BYTES = 8 * MAX_IMAGE_PIXELS

_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF", b"RIFF": "WebP"}


def silence_opencv_logging():
    """OpenCV's log level to silent unless OPENCV_LOG_LEVEL is set (the user's choice wins)."""
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.setLogLevel(0)  # 0: LOG_LEVEL_SILENT


silence_opencv_logging()


def is_image_path(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _read_bytes(path):
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        raise InputError(f"{path}: folder contains no images")
    if not os.path.isfile(path):  # FIFO, device: reading could block or never end
        raise InputError(f"{path}: not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if size > MAX_IMAGE_FILE_BYTES:
        raise InputError(f"{path}: file too large for an image ({size // 2**20} MB, "
                         f"limit {MAX_IMAGE_FILE_BYTES // 2**20} MB)")
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None


def image_format(data):
    """'JPEG', 'PNG', ... from the file signature, or None for content that is no supported image format."""
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            return None if name == "WebP" and data[8:12] != b"WEBP" else name
    return None


def _looks_truncated(data, kind):
    # libjpeg decodes a cut JPEG into a grey-filled image with only a warning; a complete JPEG ends with EOI.
    if kind == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    # A complete PNG ends with its IEND chunk.
    if kind == "PNG":
        return b"IEND" not in data[-32:]
    return False


def check_header_size(data, name):
    """Refuse an image whose header declares more than MAX_IMAGE_PIXELS, before anything is decoded."""
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with scikit-image; without it the size is checked once decoded
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: our own limit applies
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError:  # more than twice Pillow's limit, which is below ours
            raise InputError(f"{name}: image too large (over {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} "
                             f"megapixels, limit {MAX_IMAGE_PIXELS // 1_000_000} megapixels)") from None
        except Exception:  # a header Pillow cannot parse: OpenCV decides
            return
    check_pixel_count(width, height, name)


def check_pixel_count(width, height, name):
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{name}: image too large ({width}x{height}, limit {MAX_IMAGE_PIXELS // 1_000_000} "
                         "megapixels)")


@contextlib.contextmanager
def native_stderr_captured():
    """Collects what C libraries (libjpeg, libpng) print on the process's stderr instead of showing it; yields a
    one-item list that holds the captured text on exit. They print warnings such as 'Corrupt JPEG data' straight
    to file descriptor 2, out of reach of Python and OpenCV log levels."""
    captured = [""]
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured[0] = sink.read().decode("utf-8", "replace").strip()


def decode_image(data, name="image"):
    """Decode encoded image bytes to BGR uint8 HxWx3, or raise InputError mentioning ``name``."""
    kind = image_format(data)
    if kind is None:
        raise InputError(f"{name}: not a readable image (not a JPEG, PNG, BMP, TIFF or WebP file)")
    if _looks_truncated(data, kind):
        raise InputError(f"{name}: truncated or corrupted image file")
    check_header_size(data, name)
    # JPEG: decode in colour so that EXIF orientation is applied, as photo viewers do. Others: unchanged, so that
    # 16-bit and alpha are converted by to_bgr_uint8 rather than by OpenCV's lossy defaults.
    flags = cv2.IMREAD_COLOR if kind == "JPEG" else cv2.IMREAD_UNCHANGED
    with native_stderr_captured() as decoder_messages:
        try:
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
        except cv2.error:
            image = None
    if decoder_messages[0]:
        logger.debug("%s: decoder said: %s", name, decoder_messages[0].replace("\n", " | "))
    if image is None:
        raise InputError(f"{name}: not a readable image (corrupted or unsupported {kind} data)")
    check_pixel_count(image.shape[1], image.shape[0], name)
    try:
        return to_bgr_uint8(image)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None


def _to_uint8(image):
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return cv2.convertScaleAbs(image, alpha=1 / 257)  # 65535 -> 255, rounded, no float copy of the image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):  # [0, 1] as OpenCV stores float images; NaN -> 0
        scaled = np.clip(image, 0.0, 1.0)  # the one float copy; the rest is in place
        np.nan_to_num(scaled, copy=False)
        np.rint(np.multiply(scaled, 255.0, out=scaled), out=scaled)
        return scaled.astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, 255).astype(np.uint8)
    raise InputError(f"unsupported pixel type {image.dtype}")


def to_bgr_uint8(image):
    """Convert any decoded image (gray, 16-bit, float, gray+alpha, RGBA/BGRA) to BGR uint8 HxWx3."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise InputError("empty image")
    if image.ndim not in (2, 3):
        raise InputError(f"unsupported image shape {image.shape}")
    image = np.ascontiguousarray(_to_uint8(image))
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise InputError(f"unsupported number of channels: {channels}")


def imread(path):
    """Read an image file (any path, unicode included) as BGR uint8 HxWx3, or raise InputError."""
    return decode_image(_read_bytes(path), path)


def imwrite(path, image_bgr):
    """Write an image atomically (unicode-safe); the extension chooses the format."""
    ext = os.path.splitext(path)[1] or ".png"
    try:
        ok, encoded = cv2.imencode(ext, image_bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise InputError(f"{path}: cannot encode an image with extension '{ext}'")
    with output_error(path), atomic_output(path) as tmp_path:
        encoded.tofile(tmp_path)


def load_sample_portrait():
    """The public-domain astronaut portrait shipped by scikit-image, as BGR uint8."""
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


SAMPLE_PORTRAIT_NAME = "astronaut (scikit-image sample)"


def check_bgr_image(image):
    """Raise InputError unless ``image`` is a non-empty BGR uint8 HxWx3 array (the library APIs' input)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"expected a BGR uint8 HxWx3 image, got shape {getattr(image, 'shape', None)} "
                         f"dtype {getattr(image, 'dtype', type(image).__name__)}")
    if min(image.shape[:2]) < 1:
        raise InputError("empty image")
    return image
