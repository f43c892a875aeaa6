"""mediapipe's own Face Mesh as a reference for agreement checks (tests, scripts/facemesh_agreement.py).

Not used at inference: it runs the same .tflite weights through mediapipe's graph, and its normalised output is
converted to our convention (image pixels; z scaled like x).
"""
from dataclasses import dataclass

import cv2
import numpy as np


class MediapipeFaceMesh:
    """mediapipe.solutions.face_mesh.FaceMesh in static-image mode, answering landmarks in image pixels."""

    def __init__(self, max_faces=4, min_detection_confidence=0.5):
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                     min_detection_confidence=min_detection_confidence,
                                                     refine_landmarks=False)

    def landmarks(self, image_bgr):
        """One (468, 3) float64 array per face (mediapipe reports x/width, y/height, z/width)."""
        height, width = image_bgr.shape[:2]
        result = self._mesh.process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        return [np.array([[p.x * width, p.y * height, p.z * width] for p in face.landmark])
                for face in result.multi_face_landmarks or []]

    def close(self):
        self._mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class LandmarkError:
    """Distances between one reference face and our nearest face, in image pixels."""

    mean_xy: float
    max_xy: float
    mean_z: float


def landmark_errors(faces, references):
    """For each reference face, its error against the nearest of ``faces`` (by mean xy distance)."""
    errors = []
    for reference in references:
        if not faces:
            break
        distances = [np.linalg.norm(face.landmarks[:, :2] - reference[:, :2], axis=1) for face in faces]
        nearest = int(np.argmin([d.mean() for d in distances]))
        z_error = np.abs(faces[nearest].landmarks[:, 2] - reference[:, 2]).mean()
        errors.append(LandmarkError(float(distances[nearest].mean()), float(distances[nearest].max()),
                                    float(z_error)))
    return errors
