"""Face Mesh: rotated face ROI -> 468 landmarks, batched over all faces of an image.

The ROI follows mediapipe's face_landmark front-end: the detection box, turned so that the line from the subject's
right eye to the left eye is horizontal, squared on its long side and enlarged 1.5x. The ROI is warped onto the
192x192 model input (its outer corners onto the input's corners, edge pixels replicated outside the image), and
the model's crop-pixel landmarks are mapped back through the same rotation and scale; z is scaled like x.
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np

from face_detection.facemesh.detector import LEFT_EYE, RIGHT_EYE
from util.backend import create_backend
from util.math_utils import sigmoid

INPUT_SIZE = 192
NUM_LANDMARKS = 468
ROI_SCALE = 1.5
MIN_PRESENCE = 0.5


@dataclass(frozen=True)
class RotatedRoi:
    """A square image region: centre (x, y) px, side px, rotation in radians (clockwise on screen, y down)."""

    center_x: float
    center_y: float
    size: float
    rotation: float

    def _axes(self):
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        return np.array([cos, sin]), np.array([-sin, cos])  # the ROI's x and y axes in the image

    def to_image(self, points_normalised):
        """Points in ROI coordinates normalised to [0, 1] (..., 2) -> image pixels."""
        x_axis, y_axis = self._axes()
        centred = (np.asarray(points_normalised, dtype=np.float64) - 0.5) * self.size
        return centred[..., :1] * x_axis + centred[..., 1:2] * y_axis + np.array([self.center_x, self.center_y])

    def corners(self):
        """(4, 2) image pixels: top-left, top-right, bottom-left, bottom-right (as seen upright in the crop)."""
        return self.to_image(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))

    def crop_matrix(self, output_size):
        """2x3 affine image px -> crop px mapping the ROI's outer corners onto the crop's corners."""
        source = self.corners()[:3].astype(np.float32)
        target = np.array([[0, 0], [output_size, 0], [0, output_size]], dtype=np.float32)
        return cv2.getAffineTransform(source, target)


def _normalize_radians(angle):
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_detection(detection, scale=ROI_SCALE):
    """mediapipe's FaceDetectionFrontDetectionToRoi on one Detection (image pixels)."""
    x1, y1, x2, y2 = (float(v) for v in detection.bbox)
    (rx, ry), (lx, ly) = detection.keypoints[RIGHT_EYE], detection.keypoints[LEFT_EYE]
    rotation = _normalize_radians(-math.atan2(-(ly - ry), lx - rx))  # target angle 0: eyes horizontal
    return RotatedRoi(center_x=(x1 + x2) / 2, center_y=(y1 + y2) / 2, size=max(x2 - x1, y2 - y1) * scale,
                      rotation=rotation)


# mediapipe's face_landmark_landmarks_to_roi: rotation from the subject's right eye outer corner to the left one.
ROTATION_START_LANDMARK, ROTATION_END_LANDMARK = 33, 263


def roi_from_landmarks(landmarks, scale=ROI_SCALE):
    """mediapipe's FaceLandmarkLandmarksToRoi: the next video frame's ROI from this frame's landmarks (image px).

    Axis-aligned bounding box of the landmarks, turned by the eye-corner angle, squared on its long side, 1.5x.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    (sx, sy), (ex, ey) = points[ROTATION_START_LANDMARK], points[ROTATION_END_LANDMARK]
    rotation = _normalize_radians(-math.atan2(-(ey - sy), ex - sx))
    return RotatedRoi(center_x=(x1 + x2) / 2, center_y=(y1 + y2) / 2, size=max(x2 - x1, y2 - y1) * scale,
                      rotation=rotation)


def crop_input(image_bgr, roi):
    """(3, 192, 192) float32 RGB in [0, 1] of the ROI."""
    crop = cv2.warpAffine(image_bgr, roi.crop_matrix(INPUT_SIZE), (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return (crop[:, :, ::-1].astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)


class FaceLandmarker:
    """The 468-point Face Mesh model over a batch of ROIs."""

    def __init__(self, model_path, *, env_id=-1, force_onnx=False):
        self.backend = create_backend(model_path, env_id=env_id, force_onnx=force_onnx)

    def predict(self, image_bgr, rois):
        """Landmarks (N, 468, 3) float32 image px and presence probabilities (N,) for each ROI, in one inference."""
        if not rois:
            return np.zeros((0, NUM_LANDMARKS, 3), np.float32), np.zeros(0)
        batch = np.ascontiguousarray(np.stack([crop_input(image_bgr, roi) for roi in rois]))
        raw_landmarks, presence_logits = self.backend.predict(batch)
        crop_points = raw_landmarks.reshape(len(rois), NUM_LANDMARKS, 3).astype(np.float64) / INPUT_SIZE
        landmarks = np.empty(crop_points.shape, dtype=np.float32)
        for i, roi in enumerate(rois):
            landmarks[i, :, :2] = roi.to_image(crop_points[i, :, :2])
            landmarks[i, :, 2] = crop_points[i, :, 2] * roi.size
        return landmarks, sigmoid(presence_logits.reshape(-1))
