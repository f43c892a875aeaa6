"""BlazeFace face detector (mediapipe's short- and full-range models): BGR image -> list[Detection].

Front-end and decoding follow mediapipe's face_detection graph: the whole image is letterboxed (aspect kept, zero
padding) into the square model input, normalised to [-1, 1]; boxes and 6 keypoints are decoded against SSD anchors
(TensorsToDetections), scores are clipped logits through a sigmoid, kept from 0.5 (short) / 0.6 (full), merged by
weighted non-maximum suppression (IoU 0.3) and mapped back to image pixels.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from face_detection.facemesh.anchors import FULL_RANGE, SHORT_RANGE, generate_anchors
from util.backend import create_backend
from util.errors import InputError
from util.math_utils import sigmoid

NUM_KEYPOINTS = 6  # subject's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion
RIGHT_EYE, LEFT_EYE = 0, 1


@dataclass(frozen=True)
class DetectorConfig:
    anchor_options: object
    min_score: float = 0.5
    score_clip: float = 100.0  # logits are clipped to +-100 before the sigmoid, as mediapipe does
    nms_iou: float = 0.3

    @property
    def input_size(self):
        return self.anchor_options.input_size


# Score thresholds of mediapipe's graphs: 0.5 for short range (FaceMesh's min_detection_confidence), 0.6 for full
# range (face_detection_full_range.pbtxt; mediapipe's Python FaceDetection does not override it).
DETECTOR_CONFIGS = {"short": DetectorConfig(SHORT_RANGE, min_score=0.5),
                    "full": DetectorConfig(FULL_RANGE, min_score=0.6)}


@dataclass
class Detection:
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 in image pixels
    keypoints: np.ndarray  # (6, 2) x, y in image pixels
    score: float


@dataclass(frozen=True)
class Letterbox:
    """The square region of the image (side = long side, centred) that is scaled onto the model input."""

    left: float
    top: float
    side: float

    @classmethod
    def for_image(cls, height, width):
        side = float(max(height, width))
        return cls(left=(width - side) / 2, top=(height - side) / 2, side=side)

    def matrix(self, input_size):
        """2x3 affine image px -> model input px (the region's outer corners map onto the input's corners)."""
        scale = input_size / self.side
        return np.array([[scale, 0.0, -self.left * scale], [0.0, scale, -self.top * scale]], dtype=np.float64)

    def to_image(self, points_normalised):
        """Points normalised to the model input (..., 2) -> image pixels."""
        return points_normalised * self.side + np.array([self.left, self.top])


def letterbox_input(image_bgr, letterbox, input_size):
    """(1, 3, S, S) float32 RGB in [-1, 1]; padding is black (-1), as mediapipe's zero border."""
    warped = cv2.warpAffine(image_bgr, letterbox.matrix(input_size), (input_size, input_size),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    rgb = warped[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray((rgb * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None])


def decode_boxes(regressors, anchors, input_size):
    """Raw regressors (N, 16) -> boxes (N, 4) x1, y1, x2, y2 and keypoints (N, 6, 2), normalised to the input.

    Each row is (x, y, w, h) of the box centre/size then (x, y) per keypoint, in input pixels relative to the
    anchor centre (scale = input size, anchor size 1).
    """
    scale = anchors[:, 2:4] / input_size
    centres = regressors[:, 0:2] * scale + anchors[:, 0:2]
    half_sizes = regressors[:, 2:4] * scale / 2
    boxes = np.concatenate([centres - half_sizes, centres + half_sizes], axis=1)
    keypoints = regressors[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) * scale[:, None, :] \
        + anchors[:, None, 0:2]
    return boxes, keypoints


def _iou(box, boxes):
    """IoU of one box (4,) against boxes (N, 4), 0 where they do not intersect."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes, keypoints, scores, iou_threshold):
    """mediapipe's WEIGHTED non-maximum suppression.

    Take the best remaining detection; every remaining detection overlapping it by more than ``iou_threshold``
    (itself included) is removed and merged: box and keypoints become their score-weighted mean, the score stays
    the best one's. Returns [(box, keypoints, score)] best first.
    """
    remaining = np.argsort(-scores, kind="stable")
    merged = []
    while remaining.size:
        best = remaining[0]
        overlapping = _iou(boxes[best], boxes[remaining]) > iou_threshold
        members = remaining[overlapping]
        weights = scores[members][:, None]
        total = weights.sum()
        box = (boxes[members] * weights).sum(axis=0) / total
        points = (keypoints[members] * weights[:, :, None]).sum(axis=0) / total
        merged.append((box, points, float(scores[best])))
        remaining = remaining[~overlapping]
    return merged


class FaceDetector:
    """BlazeFace short|full range on one image at a time."""

    def __init__(self, model_path, variant="short", *, env_id=-1, force_onnx=False):
        if variant not in DETECTOR_CONFIGS:
            raise InputError(f"unknown detector '{variant}' (choose from {', '.join(DETECTOR_CONFIGS)})")
        self.variant = variant
        self.config = DETECTOR_CONFIGS[variant]
        self.anchors = generate_anchors(self.config.anchor_options)
        self.backend = create_backend(model_path, env_id=env_id, force_onnx=force_onnx)

    def detect(self, image_bgr):
        """All faces scoring >= min_score, best first."""
        size = self.config.input_size
        letterbox = Letterbox.for_image(*image_bgr.shape[:2])
        regressors, classificators = self.backend.predict(letterbox_input(image_bgr, letterbox, size))
        logits = np.clip(classificators.reshape(-1).astype(np.float64), -self.config.score_clip,
                         self.config.score_clip)
        scores = sigmoid(logits)
        keep = scores >= self.config.min_score
        if not keep.any():
            return []
        boxes, keypoints = decode_boxes(regressors.reshape(len(self.anchors), -1)[keep].astype(np.float64),
                                        self.anchors[keep].astype(np.float64), size)
        detections = []
        for box, points, score in weighted_nms(boxes, keypoints, scores[keep], self.config.nms_iou):
            corners = letterbox.to_image(box.reshape(2, 2))
            detections.append(Detection(bbox=corners.reshape(4), keypoints=letterbox.to_image(points), score=score))
        return detections
