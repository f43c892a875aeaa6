"""Face augmentation through the plugin's own crop function.

Geometry is perturbed on the *landmarks* (small rotation, scale and shift about the eye midpoint) and the crop is
cut again with ``crops.make_crop``: the model sees the same kind of crop as in service, shifted the way landmark
noise and head roll shift it, with real image content instead of padded borders. Then a mild colour jitter, and an
optional horizontal flip of the crop (labels: ``LabelTable.flipped``, per-eye labels swap).
"""
from dataclasses import dataclass

import numpy as np

from face_recognition.ax_facial_features import crops


@dataclass(frozen=True)
class AugmentConfig:
    max_rotation_deg: float = 8.0
    max_scale: float = 0.08  # relative
    max_shift: float = 0.04  # fraction of the inter-ocular distance
    brightness: float = 0.15  # relative
    contrast: float = 0.15
    saturation: float = 0.15


def jitter_landmarks(landmarks, rng, config):
    """Landmarks moved by a random similarity transform about the eye midpoint (z kept)."""
    left_eye, right_eye, _ = crops.anchor_points(landmarks)
    centre = (left_eye + right_eye) / 2
    eye_distance = float(np.linalg.norm(left_eye - right_eye))
    angle = np.deg2rad(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    scale = 1.0 + rng.uniform(-config.max_scale, config.max_scale)
    shift = rng.uniform(-config.max_shift, config.max_shift, 2) * eye_distance
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = np.array(landmarks, dtype=np.float64, copy=True)
    moved[:, :2] = (moved[:, :2] - centre) @ rotation.T + centre + shift
    return moved


def colour_jitter(image_rgb, rng, config):
    """Random brightness, contrast and saturation on an RGB uint8 image."""
    image = image_rgb.astype(np.float32)
    gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    saturation = 1.0 + rng.uniform(-config.saturation, config.saturation)
    image = gray[..., None] + saturation * (image - gray[..., None])
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
    image = gray.mean() + contrast * (image - gray.mean())
    image *= 1.0 + rng.uniform(-config.brightness, config.brightness)
    return np.clip(image, 0, 255).astype(np.uint8)


def hflip(image_rgb):
    return np.ascontiguousarray(image_rgb[:, ::-1])


def augmented_crop(image_bgr, landmarks, kind, rng, config=AugmentConfig()):
    """One augmented (unflipped) crop of one face."""
    crop = crops.make_crop(image_bgr, jitter_landmarks(landmarks, rng, config), kind).image
    return colour_jitter(crop, rng, config)


def view_flips(num_augmented):
    """Flip flag of each view made by ``crop_views``: plain, flipped, then augmented ones alternating."""
    return np.array([False, True] + [i % 2 == 1 for i in range(num_augmented)])


def crop_views(image_bgr, landmarks, kind, plain_crop, num_augmented, rng, config=AugmentConfig()):
    """Views of one face for training, RGB uint8: [plain, plain flipped, then ``num_augmented`` augmented crops,
    flipped as ``view_flips`` says]."""
    views = [plain_crop, hflip(plain_crop)]
    for flip in view_flips(num_augmented)[2:]:
        crop = augmented_crop(image_bgr, landmarks, kind, rng, config)
        views.append(hflip(crop) if flip else crop)
    return views
