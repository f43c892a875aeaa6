"""Crop geometry of the original ax Inc. plugin, on landmarks whose answer is known by hand."""
import numpy as np
import pytest

from face_recognition.ax_facial_features.constants import (
    EYE_BAND, FACE, LEFT_EYE_CONTOUR, MOUTH_INNER_CONTOUR, RIGHT_EYE_CONTOUR)
from face_recognition.ax_facial_features.crops import crop_corners, make_crop, preprocess, warp_corners
from util.errors import InputError


def synthetic_landmarks(left_eye, right_eye, mouth):
    """468 points with every eye-contour point on its eye centre and every inner-lip point on the mouth centre."""
    points = np.zeros((468, 3))
    points[:, :2] = (np.asarray(left_eye) + np.asarray(right_eye) + np.asarray(mouth)) / 3
    points[list(LEFT_EYE_CONTOUR), :2] = left_eye
    points[list(RIGHT_EYE_CONTOUR), :2] = right_eye
    points[list(MOUTH_INNER_CONTOUR), :2] = mouth
    return points


def test_face_crop_uses_eye_to_mouth_when_it_is_longer():
    # Subject's left eye is image-right. Eyes 20 px apart, mouth 30 px below: down = (0, 30), right = (30, 0).
    landmarks = synthetic_landmarks(left_eye=(60, 40), right_eye=(40, 40), mouth=(50, 70))
    expected = [[50 - 54, 40 - 54], [50 + 54, 40 - 54], [50 - 54, 40 + 54], [50 + 54, 40 + 54]]
    assert np.allclose(crop_corners(landmarks, FACE), expected)


def test_face_crop_uses_eye_vector_when_it_is_longer():
    landmarks = synthetic_landmarks(left_eye=(90, 40), right_eye=(50, 40), mouth=(70, 60))
    # right = (40, 0), down = its perpendicular (0, 40); half size 1.8 * 40 = 72.
    assert np.allclose(crop_corners(landmarks, FACE), [[-2, -32], [142, -32], [-2, 112], [142, 112]])


def test_eye_band_scales_down_vector_by_0_33():
    landmarks = synthetic_landmarks(left_eye=(60, 40), right_eye=(40, 40), mouth=(50, 70))
    # right = (30, 0), down = 0.33 * (0, 30) = (0, 9.9), factor 1.0 around the eye midpoint (50, 40).
    assert np.allclose(crop_corners(landmarks, EYE_BAND), [[20, 30.1], [80, 30.1], [20, 49.9], [80, 49.9]])


def test_crop_rotates_with_the_face():
    upright = synthetic_landmarks(left_eye=(60, 40), right_eye=(40, 40), mouth=(50, 70))
    # The same face turned 90 degrees clockwise about the origin: (x, y) -> (-y, x).
    turned = upright.copy()
    turned[:, 0], turned[:, 1] = -upright[:, 1], upright[:, 0]
    expected = crop_corners(upright, FACE)[:, ::-1] * [-1, 1]
    assert np.allclose(crop_corners(turned, FACE), expected)


def test_crop_content_and_size():
    image = np.zeros((200, 200, 3), np.uint8)
    image[:, 100:] = (255, 0, 0)  # right half blue in BGR
    landmarks = synthetic_landmarks(left_eye=(120, 80), right_eye=(80, 80), mouth=(100, 140))
    crop = make_crop(image, landmarks, FACE)
    assert crop.image.shape == (256, 256, 3) and crop.image.dtype == np.uint8
    assert crop.source_size == (216, 216)  # 2 * 1.8 * 60 px
    # RGB output: the blue right half has its 255 in channel 2.
    assert crop.image[128, 200, 2] == 255 and crop.image[128, 50, 2] == 0


def test_warp_is_native_size():
    image = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    corners = np.array([[10, 20], [60, 20], [10, 40], [60, 40]], float)
    native = warp_corners(image, corners)
    assert native.shape == (20, 50, 3)
    assert np.array_equal(native[5:15, 5:45], image[25:35, 15:55, ::-1])  # axis-aligned: a pure copy, RGB


def test_preprocess_is_imagenet_normalised_nchw():
    batch = preprocess([np.full((256, 256, 3), 255, np.uint8), np.zeros((256, 256, 3), np.uint8)])
    assert batch.shape == (2, 3, 256, 256) and batch.dtype == np.float32
    assert np.allclose(batch[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225])
    assert np.allclose(batch[1, :, 0, 0], -np.array([0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225])
    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)  # any size, NHWC -> NCHW
    reference = (image / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.abs(preprocess([image])[0] - reference.transpose(2, 0, 1)).max() < 1e-5


@pytest.mark.parametrize("landmarks", [
    np.full((468, 3), 5.0),                       # all points equal
    np.full((468, 3), np.nan),                    # NaN
    np.zeros((10, 2)),                            # wrong shape
], ids=["equal", "nan", "shape"])
def test_degenerate_landmarks_raise_input_error(landmarks):
    with pytest.raises(InputError):
        make_crop(np.zeros((50, 50, 3), np.uint8), landmarks, FACE)
