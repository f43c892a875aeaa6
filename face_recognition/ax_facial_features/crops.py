"""Crops cut from Face Mesh landmarks, and the classifier preprocessing.

The geometry is the original ax Inc. one, and training uses these very functions (no train/serve skew):
- eye centres = mean of each eye's 16 contour landmarks, mouth centre = mean of the 20 inner-lip landmarks;
- from the eye midpoint, if the eye-to-eye vector is longer than eye-to-mouth, ``right`` = eye vector and ``down``
  its perpendicular, else ``down`` = eye-to-mouth and ``right`` its perpendicular;
- face crop: corners at midpoint -/+ 1.8 (right + down); eye band: ``down`` scaled by 0.33, factor 1.0;
- rotated affine warp (Lanczos) at native size, then resize to 256x256 RGB; ImageNet mean/std, NCHW float32.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from face_recognition.ax_facial_features.constants import (
    CLASSIFIER_INPUT_SIZE, CROP_DOWN_FACTOR, CROP_SCALE, EYE_CROP_KINDS, IMAGENET_MEAN, IMAGENET_STD,
    LEFT_EYE_CONTOUR, MOUTH_INNER_CONTOUR, PER_EYE_CROP, PER_EYE_INPUT_SIZE, PER_EYE_SIDE, PER_EYE_UP,
    RIGHT_EYE_CONTOUR, SUBJECT_LEFT, SUBJECT_RIGHT)
from util.errors import InputError
from util.image_utils import MAX_IMAGE_PIXELS

EYE_OF_CROP_KIND = {kind: eye for eye, kind in EYE_CROP_KINDS.items()}
# (pixel / 255 - mean) / std == pixel * _SCALE + _OFFSET
_SCALE = (1.0 / (255.0 * np.array(IMAGENET_STD))).astype(np.float32)
_OFFSET = (-np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD)).astype(np.float32)


@dataclass
class Crop:
    """A rotated crop: ``image`` RGB uint8 (size x size x 3); ``corners`` (4, 2) float, image pixels, in the
    order top-left, top-right, bottom-left, bottom-right; ``source_size`` (width, height) of the native warp."""
    kind: str
    image: np.ndarray
    corners: np.ndarray
    source_size: tuple


def _checked_landmarks(landmarks):
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] < 2:
        raise InputError(f"landmarks must be a (468, 2 or 3) array, got shape {points.shape}")
    if not np.all(np.isfinite(points[:468, :2])):
        raise InputError("landmarks contain NaN or infinite values")
    return points[:, :2]


def anchor_points(landmarks):
    """(subject's left eye centre, subject's right eye centre, mouth centre), each (2,) in image pixels."""
    points = _checked_landmarks(landmarks)
    return (points[list(LEFT_EYE_CONTOUR)].mean(axis=0),
            points[list(RIGHT_EYE_CONTOUR)].mean(axis=0),
            points[list(MOUTH_INNER_CONTOUR)].mean(axis=0))


def crop_corners(landmarks, kind):
    """Corners (4, 2) of the ``kind`` crop (FACE or EYE_BAND): top-left, top-right, bottom-left, bottom-right."""
    left_eye, right_eye, mouth = anchor_points(landmarks)
    eye_midpoint = (left_eye + right_eye) / 2
    # The subject's left eye is image-right, so this vector points to the image's right on an upright face.
    eye_vector = left_eye - right_eye
    eye_to_mouth = mouth - eye_midpoint
    if np.linalg.norm(eye_vector) > np.linalg.norm(eye_to_mouth):
        right = eye_vector
        down = np.array([-right[1], right[0]])
    else:
        down = eye_to_mouth
        right = np.array([down[1], -down[0]])
    down = down * CROP_DOWN_FACTOR[kind]
    scale = CROP_SCALE[kind]
    top_left = eye_midpoint - scale * (right + down)
    return np.stack([top_left,
                     top_left + 2 * scale * right,
                     top_left + 2 * scale * down,
                     eye_midpoint + scale * (right + down)])


# A crop this many times larger than the image's long side is no face of it: the landmarks are wrong. Whatever the
# image, a crop is warped at native size only up to the project's image size limit (memory).
MAX_CROP_TO_IMAGE = 8


def warp_corners(image_bgr, corners):
    """Cut the rotated quadrilateral at its native size (Lanczos), as RGB uint8."""
    top_left, top_right, bottom_left = corners[0], corners[1], corners[2]
    width_px, height_px = np.linalg.norm(top_right - top_left), np.linalg.norm(bottom_left - top_left)
    too_large = max(width_px, height_px) > MAX_CROP_TO_IMAGE * max(image_bgr.shape[:2]) \
        or width_px * height_px > MAX_IMAGE_PIXELS
    if not np.isfinite(width_px * height_px) or too_large:
        raise InputError(f"crop of {width_px:.3g}x{height_px:.3g} px for a {image_bgr.shape[1]}x{image_bgr.shape[0]} "
                         "image: the landmarks do not describe a face in it")
    width, height = int(round(width_px)), int(round(height_px))
    if width < 1 or height < 1:
        raise InputError(f"degenerate crop ({width}x{height} px): the landmarks do not span a face")
    source = np.float32([top_left, top_right, bottom_left])
    target = np.float32([[0, 0], [width, 0], [0, height]])
    transform = cv2.getAffineTransform(source, target)
    warped = cv2.warpAffine(image_bgr, transform, (width, height), flags=cv2.INTER_LANCZOS4)
    return cv2.cvtColor(warped, cv2.COLOR_BGR2RGB)


def crop_size(kind):
    """Side of a crop kind's classifier input: 256 for the face and the eye band, 128 for a single eye (also for
    the manifest's crop name ``PER_EYE_CROP`` of a per-eye model, which takes one eye crop per row)."""
    return PER_EYE_INPUT_SIZE if kind in EYE_OF_CROP_KIND or kind == PER_EYE_CROP else CLASSIFIER_INPUT_SIZE


def kind_corners(landmarks, kind):
    """Corners (4, 2) of any crop kind: face, eye band, or one eye (``EYE_CROP_KINDS``)."""
    if kind in EYE_OF_CROP_KIND:
        return eye_crop_corners(landmarks, EYE_OF_CROP_KIND[kind])
    return crop_corners(landmarks, kind)


def source_width(corners):
    """Width in source-image pixels of a crop given by its corners: how much real detail it holds."""
    corners = np.asarray(corners, dtype=np.float64)
    return float(np.linalg.norm(corners[1] - corners[0]))


def make_crop(image_bgr, landmarks, kind, size=None):
    """The ``kind`` crop of one face (face, eye band, or one eye: ``EYE_CROP_KINDS``), resized to ``size`` x
    ``size`` RGB (default ``crop_size(kind)``)."""
    size = size or crop_size(kind)
    if kind in EYE_OF_CROP_KIND:
        return make_eye_crop(image_bgr, landmarks, EYE_OF_CROP_KIND[kind], size)
    corners = crop_corners(landmarks, kind)
    native = warp_corners(image_bgr, corners)
    resized = cv2.resize(native, (size, size))
    return Crop(kind=kind, image=resized, corners=corners.astype(np.float32),
                source_size=(native.shape[1], native.shape[0]))


def eye_crop_corners(landmarks, eye):
    """Corners (4, 2) of the square crop around the subject's ``eye`` ("left" or "right"), upright with the face.

    The subject's left eye (image-right) is returned MIRRORED (its corners' left and right swapped), so that both
    eyes reach a per-eye model in one canonical orientation: that of the subject's right eye (image-left).
    """
    left_eye, right_eye, _ = anchor_points(landmarks)
    eye_vector = left_eye - right_eye
    distance = np.linalg.norm(eye_vector)
    if distance < 1e-6:
        raise InputError("degenerate landmarks: both eyes at the same point")
    right = eye_vector * PER_EYE_SIDE / 2
    down = np.array([-right[1], right[0]])
    centre = (left_eye if eye == SUBJECT_LEFT else right_eye) - down / np.linalg.norm(down) * distance * PER_EYE_UP
    top_left, top_right = centre - right - down, centre + right - down
    bottom_left, bottom_right = centre - right + down, centre + right + down
    if eye == SUBJECT_LEFT:
        return np.stack([top_right, top_left, bottom_right, bottom_left])
    if eye != SUBJECT_RIGHT:
        raise ValueError(f"eye must be '{SUBJECT_LEFT}' or '{SUBJECT_RIGHT}', got {eye!r}")
    return np.stack([top_left, top_right, bottom_left, bottom_right])


def make_eye_crop(image_bgr, landmarks, eye, size=PER_EYE_INPUT_SIZE):
    """The per-eye crop of the subject's ``eye`` (the left one mirrored), resized to ``size`` RGB."""
    corners = eye_crop_corners(landmarks, eye)
    native = warp_corners(image_bgr, corners)
    return Crop(kind=EYE_CROP_KINDS[eye], image=cv2.resize(native, (size, size)), corners=corners.astype(np.float32),
                source_size=(native.shape[1], native.shape[0]))


def preprocess(crop_images_rgb):
    """RGB uint8 crops (N of HxWx3, already at the classifier size) -> (N, 3, H, W) float32, ImageNet-normalised.
    One multiply-add per channel straight into the NCHW output (several times faster than divide, transpose,
    subtract, divide; the same values within 1e-6)."""
    batch = np.stack([np.asarray(image) for image in crop_images_rgb])
    out = np.empty((batch.shape[0], 3) + batch.shape[1:3], dtype=np.float32)
    for channel in range(3):
        np.multiply(batch[..., channel], _SCALE[channel], out=out[:, channel], dtype=np.float32)
        out[:, channel] += _OFFSET[channel]
    return out
