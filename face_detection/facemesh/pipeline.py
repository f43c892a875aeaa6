"""Face Mesh as a library: BGR image -> list[Face] (detection, rotated ROI, 468 landmarks in image pixels).

    from face_detection.facemesh.pipeline import FaceMesh
    faces = FaceMesh().process(image_bgr)   # HxWx3 uint8, OpenCV (BGR) order
    faces[0].landmarks                      # (468, 3) float32: x, y, z in image pixels (z scaled like x)

Static-image behaviour of mediapipe's FaceMesh (static_image_mode=True, refine_landmarks=False): detect, keep the
best ``max_faces`` detections, drop ROIs that overlap a later one by IoU > 0.5 (mediapipe's association step), run
the mesh on all ROIs in one batch and keep faces whose presence is >= 0.5.
"""
from dataclasses import dataclass
from itertools import count
from typing import Optional

import numpy as np

from face_detection.facemesh.detector import FaceDetector
from face_detection.facemesh.landmarks import MIN_PRESENCE, FaceLandmarker, roi_from_detection, roi_from_landmarks
from face_detection.facemesh.model_files import ensure_models
from util.errors import InputError
from util.image_utils import check_bgr_image

ROI_ASSOCIATION_IOU = 0.5


@dataclass
class Face:
    bbox: np.ndarray  # (4,) x1, y1, x2, y2 of the detection, image px
    detection_score: float
    keypoints: np.ndarray  # (6, 2) detector keypoints, image px
    roi: np.ndarray  # (4, 2) corners of the rotated mesh crop: top-left, top-right, bottom-left, bottom-right
    presence_score: float
    landmarks: np.ndarray  # (468, 3) float32, image px
    track_id: Optional[int] = None  # video tracking (FaceTracker): the same id for the same face across frames


@dataclass
class Candidate:
    """A region to fit the mesh in: from a detection, or tracked from the previous frame's landmarks."""
    roi: object  # RotatedRoi
    bbox: np.ndarray
    keypoints: np.ndarray
    detection_score: float
    track_id: Optional[int] = None

    @classmethod
    def from_detection(cls, detection):
        return cls(roi=roi_from_detection(detection), bbox=detection.bbox, keypoints=detection.keypoints,
                   detection_score=detection.score)

    @classmethod
    def from_face(cls, face):
        """Tracking: the previous frame's face gives this frame's ROI; its identity and scores carry over."""
        return cls(roi=roi_from_landmarks(face.landmarks), bbox=face.bbox, keypoints=face.keypoints,
                   detection_score=face.detection_score, track_id=face.track_id)


def _axis_aligned_iou(a, b):
    """IoU of two ROIs taken as upright squares (mediapipe compares NormalizedRects ignoring rotation)."""
    half_a, half_b = a.size / 2, b.size / 2
    overlap_x = min(a.center_x + half_a, b.center_x + half_b) - max(a.center_x - half_a, b.center_x - half_b)
    overlap_y = min(a.center_y + half_a, b.center_y + half_b) - max(a.center_y - half_a, b.center_y - half_b)
    if overlap_x <= 0 or overlap_y <= 0:
        return 0.0
    intersection = overlap_x * overlap_y
    return intersection / (a.size ** 2 + b.size ** 2 - intersection)


def associate(candidates, threshold=ROI_ASSOCIATION_IOU):
    """mediapipe's AssociationNormRectCalculator: a ROI overlapping a later one by more than ``threshold`` is
    replaced by the later one (so tracked ROIs listed after detections win). Returns the survivors."""
    kept = []
    for candidate in candidates:
        kept = [c for c in kept if _axis_aligned_iou(c.roi, candidate.roi) <= threshold]
        kept.append(candidate)
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

    def detect(self, image_bgr):
        """Candidates from the detector, best first, at most ``max_faces``."""
        return [Candidate.from_detection(d) for d in self.detector.detect(image_bgr)[:self.max_faces]]

    def fit(self, image_bgr, candidates):
        """The mesh on all candidate ROIs in one batch; faces whose presence is below the threshold are dropped."""
        landmarks, presence = self.landmarker.predict(image_bgr, [c.roi for c in candidates])
        faces = [Face(bbox=c.bbox, detection_score=c.detection_score, keypoints=c.keypoints, roi=c.roi.corners(),
                      presence_score=float(p), landmarks=points, track_id=c.track_id)
                 for c, points, p in zip(candidates, landmarks, presence) if p >= self.min_presence]
        return sorted(faces, key=lambda face: -face.detection_score)

    def process(self, image_bgr, timer=None):
        """BGR uint8 HxWx3 -> faces found, highest detection score first (still images: detect every time).
        ``timer`` (util.timing.StageTimer), when given, gets the "detect" and "mesh" laps."""
        check_bgr_image(image_bgr)
        candidates = associate(self.detect(image_bgr))
        if timer:
            timer.lap("detect")
        faces = self.fit(image_bgr, candidates)
        if timer:
            timer.lap("mesh")
        return faces


class FaceTracker:
    """Video mode, as mediapipe's: each face's ROI comes from its landmarks in the previous frame, and the
    detector runs only when no face is tracked, when a tracked face was lost, or every ``redetect_interval``
    frames (to pick up faces entering the picture). Tracked faces keep a stable ``track_id``."""

    def __init__(self, face_mesh, redetect_interval=10):
        self.face_mesh = face_mesh
        self.redetect_interval = max(1, int(redetect_interval))
        self.reset()

    def reset(self):
        self.tracked = []
        self.frames_since_detection = 0
        self.lost_since_detection = False
        self._ids = count()

    def process(self, frame_bgr):
        check_bgr_image(frame_bgr)
        candidates = [Candidate.from_face(face) for face in self.tracked]
        detect = (not candidates or self.lost_since_detection
                  or self.frames_since_detection >= self.redetect_interval)
        if detect:
            # Detections first, tracked ROIs after: an overlapping tracked ROI replaces the detection (and keeps
            # its id), as mediapipe's association does.
            candidates = associate(self.face_mesh.detect(frame_bgr) + candidates)
            # Tracked faces first (stable sort), then new detections best first, up to max_faces.
            candidates = sorted(candidates, key=lambda c: c.track_id is None)[:self.face_mesh.max_faces]
            self.frames_since_detection = 0
            self.lost_since_detection = False
        faces = self.face_mesh.fit(frame_bgr, candidates)
        self.frames_since_detection += 1
        if len(faces) < len(candidates) and not detect:
            self.lost_since_detection = True
        for face in faces:
            if face.track_id is None:
                face.track_id = next(self._ids)
        self.tracked = faces
        return faces


JSON_SCHEMA = "facemesh/1"


def faces_record(image_name, faces, decimals=3):
    """JSON-ready record of one image's faces (image pixels)."""
    def rounded(array):
        return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()

    return {"schema": JSON_SCHEMA, "image": image_name,
            "faces": [{"detection_score": round(face.detection_score, 6),
                       "presence_score": round(face.presence_score, 6),
                       "roi": rounded(face.roi), "landmarks": rounded(face.landmarks)} for face in faces]}
