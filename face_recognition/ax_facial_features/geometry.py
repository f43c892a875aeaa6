"""Geometric signals the mesh gives for free, used to tell when a face cannot be judged ("unclear").

- eye openness: lid-to-lid distance over eye width (about 0.25-0.35 for an open eye, under ~0.1 when closed);
- crop size in source pixels: how much real detail the classifier input holds (the eye band of a 224 px photo);
- head yaw and pitch (degrees) from the mesh's depth: a turned face hides one eye and the side of the mouth.
"""
import math
from dataclasses import dataclass

import numpy as np

from face_recognition.ax_facial_features.constants import (
    EYE_CORNERS, EYE_LIDS, FACE_SIDES, NOSE_TIP, SUBJECT_LEFT, SUBJECT_RIGHT)


@dataclass
class FaceGeometry:
    eye_openness: dict  # subject's eye ("left"/"right") -> lid distance / eye width
    yaw_degrees: float  # positive: the face turns towards the image's right
    pitch_degrees: float  # positive: the face looks down

    def as_dict(self):
        return {"eye_openness": {eye: round(v, 4) for eye, v in self.eye_openness.items()},
                "yaw_degrees": round(self.yaw_degrees, 2), "pitch_degrees": round(self.pitch_degrees, 2)}


def eye_openness(landmarks, eye):
    points = np.asarray(landmarks, dtype=np.float64)
    outer, inner = (points[i, :2] for i in EYE_CORNERS[eye])
    upper, lower = (points[i, :2] for i in EYE_LIDS[eye])
    width = np.linalg.norm(outer - inner)
    return float(np.linalg.norm(upper - lower) / width) if width > 1e-6 else 0.0


def head_angles(landmarks):
    """(yaw, pitch) in degrees from the mesh's x, y, z (z in the same pixel scale as x).

    Yaw: the angle of the line between the two sides of the face oval out of the image plane. Pitch: the angle of
    the line from the eye midpoint to the nose tip out of the image plane, relative to its in-plane direction.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    left_side, right_side = points[FACE_SIDES[0]], points[FACE_SIDES[1]]
    across = right_side - left_side
    yaw = math.degrees(math.atan2(across[2], np.linalg.norm(across[:2]) + 1e-9))
    eye_mid = (points[EYE_CORNERS[SUBJECT_RIGHT][0]] + points[EYE_CORNERS[SUBJECT_LEFT][0]]) / 2
    down = points[NOSE_TIP] - eye_mid
    pitch = math.degrees(math.atan2(-down[2], np.linalg.norm(down[:2]) + 1e-9)) - NEUTRAL_PITCH_DEGREES
    return yaw, pitch


# The nose tip stands out of the face: on a frontal face the eye-to-nose line already leaves the image plane.
NEUTRAL_PITCH_DEGREES = 45.0


def face_geometry(landmarks):
    yaw, pitch = head_angles(landmarks)
    return FaceGeometry(eye_openness={eye: eye_openness(landmarks, eye) for eye in (SUBJECT_RIGHT, SUBJECT_LEFT)},
                        yaw_degrees=yaw, pitch_degrees=pitch)
