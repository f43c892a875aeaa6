"""Crop cache: run the plugin's Face Mesh and crops once per image, keep the results on disk.

For each image the labelled face is chosen (the largest face containing the image centre, else the largest face),
and the cache keeps its 468 landmarks and its crops (eye band, face) as uint8 RGB 256x256 arrays, made by the
plugin's own ``make_crop``. Images without a detected face are recorded in ``meta.json`` ("missed").

Layout (``.npy`` so the crops can be memory-mapped): ``<cache_root>/crops/<key>/`` with ``meta.json``,
``landmarks.npy`` (N, 468, 3) float32 (NaN rows for missed faces), ``eye_band.npy`` and ``face.npy``
(N, 256, 256, 3) uint8 (zeros for missed faces). ``key`` hashes the image folder, the image names and what the
detector and ``make_crop`` produce on a probe image, so a change of the crop geometry or of Face Mesh builds a new
cache instead of reusing stale crops (and the older cache of the same images is deleted).
"""
import hashlib
import json
import logging
import os
import shutil
import time

import numpy as np

from face_recognition.ax_facial_features import crops
from face_recognition.ax_facial_features.constants import CLASSIFIER_INPUT_SIZE, EYE_BAND, FACE
from util.file_utils import write_json_atomic
from util.image_utils import imread, load_sample_portrait

logger = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CACHE_ROOT = os.path.join(REPO_ROOT, ".cache", "training")
CROP_KINDS = (EYE_BAND, FACE)
NUM_LANDMARKS = 468


def pipeline_fingerprint(detector, kinds=CROP_KINDS):
    """Hash of what detection + cropping produce on a fixed probe (the sample portrait): landmarks rounded to
    0.01 px and the crop pixels. A change of geometry or of Face Mesh builds a new cache; an unrelated edit of
    the plugin's source does not."""
    image = load_sample_portrait()
    digest = hashlib.sha256()
    for landmarks in detector(image):
        landmarks = np.asarray(landmarks, dtype=np.float64)[:NUM_LANDMARKS, :3]
        digest.update(np.round(landmarks, 2).tobytes())
        for kind in kinds:
            digest.update(crops.make_crop(image, landmarks, kind).image.tobytes())
    return digest.hexdigest()[:12]


def facemesh_detector():
    """The plugin's Face Mesh as ``detect(image_bgr) -> list of (468, 3) landmark arrays``."""
    from face_detection.facemesh.pipeline import FaceMesh

    mesh = FaceMesh()
    return lambda image_bgr: [np.asarray(face.landmarks, dtype=np.float32) for face in mesh.process(image_bgr)]


def select_face(landmark_sets, image_shape):
    """Index of the labelled face: the largest face whose landmark box contains the image centre, else the largest
    face; None when there is no face."""
    if not landmark_sets:
        return None
    centre = np.array([image_shape[1], image_shape[0]], dtype=np.float64) / 2
    boxes = [(lm[:, :2].min(axis=0), lm[:, :2].max(axis=0)) for lm in landmark_sets]
    areas = [float(np.prod(high - low)) for low, high in boxes]
    central = [i for i, (low, high) in enumerate(boxes) if np.all(low <= centre) and np.all(centre <= high)]
    candidates = central or range(len(landmark_sets))
    return max(candidates, key=lambda i: areas[i])


class CropCache:
    """A built cache, opened read-only: rows follow ``names``."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        self.images_dir = self.meta["images_dir"]
        self.names = self.meta["names"]
        self.row_of = {name: i for i, name in enumerate(self.names)}
        self.landmarks = np.load(os.path.join(path, "landmarks.npy"))
        self.found = np.isfinite(self.landmarks[:, 0, 0])
        self._checked_kinds = set()  # extra kinds already checked against their probe (one image read each)

    def crops(self, kind):
        """(N, S, S, 3) uint8 memory map of one crop kind (S = crops.crop_size(kind)). Kinds beyond the eye band
        and the face (the per-eye crops) are cut from the stored landmarks on first use."""
        if kind not in CROP_KINDS and kind not in self._checked_kinds:
            self._ensure_extra_kind(kind)
            self._checked_kinds.add(kind)
        return np.load(os.path.join(self.path, f"{kind}.npy"), mmap_mode="r")

    def _extra_kind_probe(self, kind):
        """Hash of the kind's crop of the first detected face: a change of its geometry rebuilds the array."""
        row = int(np.flatnonzero(self.found)[0])
        crop = crops.make_crop(imread(self.image_path(row)), self.landmarks[row], kind).image
        return hashlib.sha256(crop.tobytes()).hexdigest()[:12]

    def _ensure_extra_kind(self, kind):
        record_path = os.path.join(self.path, "extra_kinds.json")
        record = {}
        if os.path.isfile(record_path):
            with open(record_path, encoding="utf-8") as f:
                record = json.load(f)
        probe = self._extra_kind_probe(kind)
        if record.get(kind) == probe and os.path.isfile(os.path.join(self.path, f"{kind}.npy")):
            return
        size, started = crops.crop_size(kind), time.time()
        tmp = os.path.join(self.path, f"{kind}.tmp.npy")
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(self.names), size, size, 3))
        for row in np.flatnonzero(self.found):
            array[row] = crops.make_crop(imread(self.image_path(row)), self.landmarks[row], kind).image
        array.flush()
        del array
        os.replace(tmp, os.path.join(self.path, f"{kind}.npy"))
        record[kind] = probe
        write_json_atomic(record_path, record)
        logger.info("crop cache: %s crops of %d faces in %.0f s", kind, int(self.found.sum()), time.time() - started)

    def rows(self, names):
        """Cache rows of ``names`` (-1 for names not in the cache)."""
        return np.array([self.row_of.get(name, -1) for name in names], dtype=np.int64)

    def image_path(self, row):
        return os.path.join(self.images_dir, self.names[row])


def cache_key(images_dir, names, detector):
    digest = hashlib.sha256(os.path.abspath(images_dir).encode())
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
    return f"{digest.hexdigest()[:12]}-{pipeline_fingerprint(detector)}"


def build_crop_cache(images_dir, names, path, detector, kinds=CROP_KINDS):
    """Detect, select the labelled face and crop every image; written to a temporary folder then renamed."""
    names = sorted(set(names))
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    size = CLASSIFIER_INPUT_SIZE
    landmarks = np.full((len(names), NUM_LANDMARKS, 3), np.nan, dtype=np.float32)
    arrays = {kind: np.lib.format.open_memmap(os.path.join(tmp, f"{kind}.npy"), mode="w+", dtype=np.uint8,
                                              shape=(len(names), size, size, 3)) for kind in kinds}
    missed, started = [], time.time()
    for row, name in enumerate(names):
        image = imread(os.path.join(images_dir, name))
        faces = detector(image)
        chosen = select_face(faces, image.shape)
        if chosen is None:
            missed.append(name)
        else:
            landmarks[row] = faces[chosen][:NUM_LANDMARKS, :3]
            for kind in kinds:
                arrays[kind][row] = crops.make_crop(image, landmarks[row], kind).image
        if (row + 1) % 250 == 0:
            logger.info("crop cache: %d/%d images, %d missed, %.0f s", row + 1, len(names), len(missed),
                        time.time() - started)
    for array in arrays.values():
        array.flush()
    np.save(os.path.join(tmp, "landmarks.npy"), landmarks)
    write_json_atomic(os.path.join(tmp, "meta.json"), {
        "images_dir": os.path.abspath(images_dir), "names": names, "kinds": list(kinds), "missed": missed,
        "fingerprint": os.path.basename(path).split("-")[-1], "seconds": round(time.time() - started, 1)})
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    logger.info("crop cache: %d images, %d without a face -> %s", len(names), len(missed), path)
    return CropCache(path)


def open_crop_cache(images_dir, names, cache_root=DEFAULT_CACHE_ROOT, detector=None):
    """The cache of ``names`` in ``images_dir``, built on first use (or when the crops would differ).
    ``detector``: ``image_bgr -> list of (468, 3) landmarks`` (default: the plugin's Face Mesh)."""
    detector = detector or facemesh_detector()
    key = cache_key(images_dir, names, detector)
    path = os.path.join(cache_root, "crops", key)
    if os.path.isfile(os.path.join(path, "meta.json")):
        return CropCache(path)
    cache = build_crop_cache(images_dir, names, path, detector)
    _remove_stale_caches(os.path.dirname(path), key)
    return cache


def _remove_stale_caches(folder, key):
    """Delete caches of the same images made by older crop code (each is ~2 GB for 4808 images)."""
    images_part = key.split("-")[0]
    for name in os.listdir(folder):
        if name.startswith(images_part + "-") and name != key:
            logger.info("removing stale crop cache %s", name)
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def open_tables_cache(tables, cache_root=DEFAULT_CACHE_ROOT, detector=None):
    """One cache for label tables sharing an image folder (the union of their images)."""
    folders = {os.path.abspath(t.images_dir) for t in tables}
    if len(folders) != 1:
        raise ValueError(f"tables must share one image folder, got {sorted(folders)}")
    names = sorted({name for t in tables for name in t.images})
    return open_crop_cache(folders.pop(), names, cache_root, detector)
