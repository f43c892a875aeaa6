"""Per-eye crops (one canonical eye orientation) and the mesh's geometric quality signals."""
import numpy as np
import pytest

from face_detection.facemesh.pipeline import FaceMesh
from face_recognition.ax_facial_features.constants import SUBJECT_LEFT, SUBJECT_RIGHT
from face_recognition.ax_facial_features.crops import eye_crop_corners, make_eye_crop
from face_recognition.ax_facial_features.geometry import face_geometry
from tests.test_crops import synthetic_landmarks
from util.errors import InputError
from util.image_utils import imread


@pytest.fixture(scope="module")
def face_mesh():
    return FaceMesh(force_onnx=True)


def test_eye_crop_geometry_on_known_landmarks():
    landmarks = synthetic_landmarks(left_eye=(150, 100), right_eye=(50, 100), mouth=(100, 180))
    # Side 0.9 x 100 px, centred 8 px above the eye; the subject's left eye comes mirrored (left/right swapped).
    right = eye_crop_corners(landmarks, SUBJECT_RIGHT)
    assert np.allclose(right, [[5, 47], [95, 47], [5, 137], [95, 137]])
    left = eye_crop_corners(landmarks, SUBJECT_LEFT)
    assert np.allclose(left, [[195, 47], [105, 47], [195, 137], [105, 137]])


def test_mirrored_image_gives_the_same_per_eye_crops(face_mesh, astronaut_bgr):
    mirrored = np.ascontiguousarray(astronaut_bgr[:, ::-1])
    landmarks = face_mesh.process(astronaut_bgr)[0].landmarks
    mirrored_landmarks = face_mesh.process(mirrored)[0].landmarks
    # The subject's left eye, mirrored into the canonical orientation, is what the mirror photo shows as the
    # subject's right eye.
    canonical = make_eye_crop(astronaut_bgr, landmarks, SUBJECT_LEFT).image.astype(float)
    from_mirror = make_eye_crop(mirrored, mirrored_landmarks, SUBJECT_RIGHT).image.astype(float)
    other_eye = make_eye_crop(astronaut_bgr, landmarks, SUBJECT_RIGHT).image.astype(float)
    # The mesh is not exactly mirror-symmetric (corners move ~2 px of a 39 px crop), so compare against the
    # alternatives: wrong orientation or the other eye differ three times as much.
    same = np.abs(canonical - from_mirror).mean()
    assert same < 0.5 * np.abs(canonical - from_mirror[:, ::-1]).mean()
    assert same < 0.5 * np.abs(canonical - other_eye).mean()


def test_eye_crop_rejects_degenerate_landmarks():
    with pytest.raises(InputError):
        eye_crop_corners(np.full((468, 3), 3.0), SUBJECT_LEFT)


def test_geometry_of_a_frontal_open_eyed_face(face_mesh, astronaut_bgr):
    geometry = face_geometry(face_mesh.process(astronaut_bgr)[0].landmarks)
    assert all(0.2 < v < 0.45 for v in geometry.eye_openness.values())
    assert abs(geometry.yaw_degrees) < 8 and abs(geometry.pitch_degrees) < 10


def test_yaw_changes_sign_in_a_mirror(face_mesh, fairface_images):
    turned = [path for path in fairface_images[:40]
              if (faces := face_mesh.process(imread(path))) and abs(face_geometry(faces[0].landmarks).yaw_degrees) > 12]
    assert turned, "expected some turned faces among the first FairFace photos"
    image = imread(turned[0])
    yaw = face_geometry(face_mesh.process(image)[0].landmarks).yaw_degrees
    mirrored_yaw = face_geometry(face_mesh.process(np.ascontiguousarray(image[:, ::-1]))[0].landmarks).yaw_degrees
    assert np.sign(yaw) == -np.sign(mirrored_yaw) and abs(abs(yaw) - abs(mirrored_yaw)) < 5
