"""Face Mesh as a library: BGR image -> list[Face] (detection, rotated ROI, 468 landmarks in image pixels).

    from face_detection.facemesh.pipeline import FaceMesh
    faces = FaceMesh().process(image_bgr)   # HxWx3 uint8, OpenCV (BGR) order
    faces[0].landmarks                      # (468, 3) float32: x, y, z in image pixels (z scaled like x)

Static-image behaviour of mediapipe's FaceMesh (static_image_mode=True, refine_landmarks=False): detect, keep the
best ``max_faces`` detections, drop ROIs that overlap a later one by IoU > 0.5 (mediapipe's association step), run
the mesh on all ROIs in one batch and keep faces whose presence is >= 0.5.
"""
from dataclasses import dataclass

import numpy as np

from face_detection.facemesh.detector import FaceDetector
from face_detection.facemesh.landmarks import MIN_PRESENCE, FaceLandmarker, roi_from_detection
from face_detection.facemesh.model_files import ensure_models
from util.errors import InputError

ROI_ASSOCIATION_IOU = 0.5


@dataclass
class Face:
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 of the detection, image px
    detection_score: float
    keypoints: np.ndarray  # (6, 2) detector keypoints, image px
    roi: np.ndarray  # (4, 2) corners of the rotated mesh crop: top-left, top-right, bottom-left, bottom-right
    presence_score: float
    landmarks: np.ndarray  # (468, 3) float32, image px


def _axis_aligned_iou(a, b):
    """IoU of two ROIs taken as upright squares (mediapipe compares NormalizedRects ignoring rotation)."""
    half_a, half_b = a.size / 2, b.size / 2
    overlap_x = min(a.center_x + half_a, b.center_x + half_b) - max(a.center_x - half_a, b.center_x - half_b)
    overlap_y = min(a.center_y + half_a, b.center_y + half_b) - max(a.center_y - half_a, b.center_y - half_b)
    if overlap_x <= 0 or overlap_y <= 0:
        return 0.0
    intersection = overlap_x * overlap_y
    return intersection / (a.size ** 2 + b.size ** 2 - intersection)


def associate_rois(detections, rois, threshold=ROI_ASSOCIATION_IOU):
    """mediapipe's AssociationNormRectCalculator: a ROI overlapping a later one by more than ``threshold`` is
    replaced by the later one. Returns the surviving (detection, roi) pairs."""
    kept = []
    for detection, roi in zip(detections, rois):
        kept = [(d, r) for d, r in kept if _axis_aligned_iou(r, roi) <= threshold]
        kept.append((detection, roi))
    return kept


class FaceMesh:
    """Detector + Face Mesh, with models and anchors prepared once."""

    def __init__(self, detector="short", max_faces=None, env_id=-1, force_onnx=False, model_dir=None,
                 min_presence=MIN_PRESENCE):
        if max_faces is not None and max_faces < 1:
            raise InputError(f"max_faces must be at least 1, got {max_faces}")
        paths = ensure_models(model_dir, detector=detector)
        self.detector = FaceDetector(paths["detector"], detector, env_id=env_id, force_onnx=force_onnx)
        self.landmarker = FaceLandmarker(paths["landmark"], env_id=env_id, force_onnx=force_onnx)
        self.max_faces = max_faces
        self.min_presence = min_presence

    def process(self, image_bgr):
        """BGR uint8 HxWx3 -> faces found, highest detection score first."""
        _check_image(image_bgr)
        detections = self.detector.detect(image_bgr)[:self.max_faces]
        pairs = associate_rois(detections, [roi_from_detection(d) for d in detections])
        landmarks, presence = self.landmarker.predict(image_bgr, [roi for _, roi in pairs])
        faces = [Face(bbox=detection.bbox, detection_score=detection.score, keypoints=detection.keypoints,
                      roi=roi.corners(), presence_score=float(p), landmarks=points)
                 for (detection, roi), points, p in zip(pairs, landmarks, presence) if p >= self.min_presence]
        return sorted(faces, key=lambda face: -face.detection_score)


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"expected a BGR uint8 HxWx3 image, got shape {getattr(image, 'shape', None)} "
                         f"dtype {getattr(image, 'dtype', type(image).__name__)}")
    if min(image.shape[:2]) < 1:
        raise InputError("empty image")


JSON_SCHEMA = "facemesh/1"


def faces_record(image_name, faces, decimals=3):
    """JSON-ready record of one image's faces (image pixels)."""
    def rounded(array):
        return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()

    return {"schema": JSON_SCHEMA, "image": image_name,
            "faces": [{"detection_score": round(face.detection_score, 6),
                       "presence_score": round(face.presence_score, 6),
                       "roi": rounded(face.roi), "landmarks": rounded(face.landmarks)} for face in faces]}
