"""face_detection/facemesh: anchors, detector, mesh, pipeline and CLI, checked against mediapipe's own pipeline.

mediapipe (FaceMesh static_image_mode=True, refine_landmarks=False; FaceDetection model_selection=1 for the full
range detector) runs the same .tflite weights through its own graph, so the agreement tests check the whole
front-end: letterbox, anchors, decoding, weighted NMS, ROI rotation/scale, crop warp and landmark projection.
"""
import json
import os
import subprocess
import sys

import cv2
import mediapipe as mp
import numpy as np
import pytest

from face_detection.facemesh.anchors import FULL_RANGE, SHORT_RANGE, generate_anchors
from face_detection.facemesh.detector import Detection
from face_detection.facemesh.landmarks import roi_from_detection
from face_detection.facemesh.mediapipe_reference import MediapipeFaceMesh, landmark_errors
from face_detection.facemesh.pipeline import JSON_SCHEMA, Face, FaceMesh
from tests.conftest import REPO_ROOT, write_image
from util.errors import InputError
from util.image_utils import SAMPLE_PORTRAIT_NAME

SCRIPT = os.path.join(REPO_ROOT, "face_detection", "facemesh", "facemesh.py")
MAX_MEAN_ERROR_PX = 0.5  # mean landmark distance to mediapipe's, in image pixels
FAIRFACE_SAMPLE = 200


# --- references and helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_mesh():
    return FaceMesh(detector="short", force_onnx=True)


@pytest.fixture(scope="module")
def full_mesh():
    return FaceMesh(detector="full", force_onnx=True)


@pytest.fixture(scope="module")
def mediapipe_mesh():
    with MediapipeFaceMesh(max_faces=4) as reference:
        yield reference


def assert_agrees_with_mediapipe(faces, references):
    assert len(faces) == len(references)
    for error in landmark_errors(faces, references):
        assert error.mean_xy <= MAX_MEAN_ERROR_PX and error.mean_z <= MAX_MEAN_ERROR_PX


def quadrants(faces, image):
    height, width = image.shape[:2]
    return sorted((int(f.roi.mean(axis=0)[1] > height / 2), int(f.roi.mean(axis=0)[0] > width / 2)) for f in faces)


def small_face_on_canvas(astronaut_bgr, canvas_size=1280):
    """The 512 px astronaut on a white canvas: its face is ~1/13 of the frame, below short range's reach."""
    canvas = np.full((canvas_size, canvas_size, 3), 255, np.uint8)
    top, left = canvas_size // 3, canvas_size // 2
    canvas[top:top + 512, left:left + 512] = astronaut_bgr
    return canvas


def rotated(image, degrees):
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


# --- anchors ----------------------------------------------------------------------------------------------------


def test_short_range_anchors_follow_the_ssd_layout():
    anchors = generate_anchors(SHORT_RANGE)
    assert anchors.shape == (896, 4)
    # stride 8: 16x16 cells x 2 anchors, then stride 16 (three layers share it): 8x8 cells x 6 anchors.
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16, 1, 1])
    np.testing.assert_allclose(anchors[512:518], np.tile([0.5 / 8, 0.5 / 8, 1, 1], (6, 1)))
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8, 1, 1])
    assert generate_anchors(SHORT_RANGE) is anchors  # computed once


def test_full_range_anchors_are_one_per_cell_of_a_48x48_map():
    anchors = generate_anchors(FULL_RANGE)
    assert anchors.shape == (2304, 4)
    centres = anchors[:, :2].reshape(48, 48, 2)
    np.testing.assert_allclose(centres[0, :, 0], (np.arange(48) + 0.5) / 48, rtol=1e-6)
    np.testing.assert_allclose(centres[:, 0, 1], (np.arange(48) + 0.5) / 48, rtol=1e-6)


# --- agreement with mediapipe ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["upright", "rotated 25 degrees", "wide crop", "tall crop"])
def test_astronaut_agrees_with_mediapipe(short_mesh, mediapipe_mesh, astronaut_bgr, variant):
    image = {"upright": astronaut_bgr, "rotated 25 degrees": rotated(astronaut_bgr, 25),
             "wide crop": astronaut_bgr[0:300], "tall crop": astronaut_bgr[:, 100:400]}[variant]
    faces = short_mesh.process(np.ascontiguousarray(image))
    assert len(faces) == 1
    assert_agrees_with_mediapipe(faces, mediapipe_mesh.landmarks(image))


def test_grid_of_four_heads_agrees_with_mediapipe(short_mesh, mediapipe_mesh, astronaut_head_grid):
    faces = short_mesh.process(astronaut_head_grid)
    assert len(faces) == 4
    assert quadrants(faces, astronaut_head_grid) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert_agrees_with_mediapipe(faces, mediapipe_mesh.landmarks(astronaut_head_grid))


def test_full_size_grid_faces_need_the_full_range_detector(short_mesh, full_mesh, mediapipe_mesh, astronaut_grid):
    # Faces of ~1/10 of the frame: short range (ours and mediapipe's FaceMesh alike) finds none, full range all 4.
    assert short_mesh.process(astronaut_grid) == []
    assert mediapipe_mesh.landmarks(astronaut_grid) == []
    faces = full_mesh.process(astronaut_grid)
    assert quadrants(faces, astronaut_grid) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_full_range_finds_a_small_face_that_short_range_misses(short_mesh, full_mesh, mediapipe_mesh,
                                                                astronaut_bgr):
    canvas = small_face_on_canvas(astronaut_bgr)
    assert short_mesh.process(canvas) == []
    assert mediapipe_mesh.landmarks(canvas) == []
    faces = full_mesh.process(canvas)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].bbox
    face_centre = (1280 // 2 + 225, 1280 // 3 + 130)  # the astronaut's face centre, moved onto the canvas
    assert x1 < face_centre[0] < x2 and y1 < face_centre[1] < y2

    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector:
        (reference,) = detector.process(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).detections
    box = reference.location_data.relative_bounding_box
    expected = np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height]) * 1280
    np.testing.assert_allclose(faces[0].bbox, expected, atol=0.5)
    keypoints = np.array([[k.x, k.y] for k in reference.location_data.relative_keypoints]) * 1280
    np.testing.assert_allclose(faces[0].keypoints, keypoints, atol=0.5)
    assert faces[0].detection_score == pytest.approx(reference.score[0], abs=1e-4)


def test_fairface_photos_agree_with_mediapipe(short_mesh, mediapipe_mesh, fairface_images):
    errors, faces_found = [], 0
    for path in fairface_images[:FAIRFACE_SAMPLE]:
        image = cv2.imread(path)
        faces, references = short_mesh.process(image), mediapipe_mesh.landmarks(image)
        assert len(faces) == len(references), path
        faces_found += len(faces)
        errors += [e.mean_xy for e in landmark_errors(faces, references)]
    assert faces_found >= 0.9 * min(FAIRFACE_SAMPLE, len(fairface_images))  # face photos: nearly all have one
    assert max(errors) <= MAX_MEAN_ERROR_PX


# --- pipeline behaviour ----------------------------------------------------------------------------------------


def test_face_record_shapes_and_roi_geometry(short_mesh, astronaut_bgr):
    (face,) = short_mesh.process(astronaut_bgr)
    assert isinstance(face, Face)
    assert face.bbox.shape == (4,) and face.keypoints.shape == (6, 2) and face.roi.shape == (4, 2)
    assert face.landmarks.shape == (468, 3) and face.landmarks.dtype == np.float32
    assert 0.5 <= face.detection_score <= 1 and 0.5 <= face.presence_score <= 1
    top_left, top_right, bottom_left, bottom_right = face.roi
    side = np.linalg.norm(top_right - top_left)
    # A square 1.5x the detection box's long side, upright enough that the top edge is on top.
    assert np.linalg.norm(bottom_left - top_left) == pytest.approx(side)
    np.testing.assert_allclose(bottom_right, top_right + bottom_left - top_left, atol=1e-6)
    assert side == pytest.approx(1.5 * max(face.bbox[2] - face.bbox[0], face.bbox[3] - face.bbox[1]))
    assert top_left[1] < bottom_left[1] and top_left[0] < top_right[0]
    # The mesh lies inside the ROI and the detection box's centre is the ROI's.
    polygon = face.roi[[0, 1, 3, 2]].astype(np.float32)
    assert all(cv2.pointPolygonTest(polygon, (float(x), float(y)), False) > 0 for x, y in face.landmarks[:, :2])
    np.testing.assert_allclose(face.roi.mean(axis=0), face.bbox.reshape(2, 2).mean(axis=0), atol=1e-6)


def test_rotated_face_gives_a_rotated_roi_and_mesh(short_mesh, astronaut_bgr):
    (upright,) = short_mesh.process(astronaut_bgr)
    (turned,) = short_mesh.process(rotated(astronaut_bgr, 25))  # counter-clockwise on screen

    def angle(a, b):
        dx, dy = b - a
        return np.degrees(np.arctan2(dy, dx))

    def eye_line(face):  # outer eye corners of the 468-point topology (subject's right 33, left 263)
        return angle(face.landmarks[33, :2], face.landmarks[263, :2])

    def roi_top_edge(face):
        return angle(face.roi[0], face.roi[1])

    assert eye_line(turned) - eye_line(upright) == pytest.approx(-25, abs=2)
    # The ROI follows the detector's eye keypoints, which are coarser than the mesh: same direction, similar size.
    assert -35 < roi_top_edge(turned) - roi_top_edge(upright) < -10


def test_faces_sorted_by_score_and_max_faces_keeps_the_best(short_mesh, astronaut_head_grid):
    faces = short_mesh.process(astronaut_head_grid)
    scores = [f.detection_score for f in faces]
    assert scores == sorted(scores, reverse=True)
    best_two = FaceMesh(max_faces=2, force_onnx=True).process(astronaut_head_grid)
    assert [f.detection_score for f in best_two] == scores[:2]
    np.testing.assert_allclose(best_two[1].landmarks, faces[1].landmarks, atol=1e-3)


def test_batched_mesh_equals_one_face_at_a_time(short_mesh, astronaut_head_grid):
    faces = short_mesh.process(astronaut_head_grid)
    for face in faces:
        roi = roi_from_detection(Detection(bbox=face.bbox, keypoints=face.keypoints, score=face.detection_score))
        np.testing.assert_allclose(roi.corners(), face.roi)
        alone = short_mesh.landmarker.predict(astronaut_head_grid, [roi])[0][0]
        np.testing.assert_allclose(alone, face.landmarks, atol=1e-3)


@pytest.mark.parametrize("shape", [(240, 320, 3), (1, 1, 3), (3, 500, 3)])
def test_images_without_faces_give_an_empty_list(short_mesh, shape):
    assert short_mesh.process(np.full(shape, 127, np.uint8)) == []


@pytest.mark.parametrize("bad", [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8),
                                 np.zeros((64, 64, 3), np.float32), np.zeros((0, 64, 3), np.uint8), None])
def test_invalid_images_raise_input_error(short_mesh, bad):
    with pytest.raises(InputError):
        short_mesh.process(bad)


def test_unknown_detector_and_bad_max_faces_raise_input_error():
    with pytest.raises(InputError, match="unknown detector"):
        FaceMesh(detector="medium", force_onnx=True)
    with pytest.raises(InputError, match="max_faces"):
        FaceMesh(max_faces=0, force_onnx=True)


# --- command line ----------------------------------------------------------------------------------------------


def _run_cli(*args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *args, "--onnx", "-q"], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _check_record(record, image_name, n_faces):
    assert record["schema"] == JSON_SCHEMA and record["image"] == image_name
    assert len(record["faces"]) == n_faces
    for face in record["faces"]:
        assert set(face) == {"detection_score", "presence_score", "roi", "landmarks"}
        assert np.array(face["roi"]).shape == (4, 2) and np.array(face["landmarks"]).shape == (468, 3)
        assert 0.5 <= face["detection_score"] <= 1 and 0.5 <= face["presence_score"] <= 1


def test_cli_writes_image_and_json(tmp_path, astronaut_head_grid, short_mesh):
    source = str(tmp_path / "grid.jpg")
    write_image(source, astronaut_head_grid)
    result = _run_cli("-i", source, "-s", str(tmp_path / "out" / "mesh.png"), "-w", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    saved = cv2.imread(str(tmp_path / "out" / "mesh.png"))
    assert saved is not None and saved.shape == astronaut_head_grid.shape
    with open(tmp_path / "out" / "mesh.json", encoding="utf-8") as f:
        record = json.load(f)
    _check_record(record, source, 4)
    # The JSON holds what the library finds on the same (decoded) image.
    expected = short_mesh.process(cv2.imread(source))
    np.testing.assert_allclose(record["faces"][0]["landmarks"], expected[0].landmarks, atol=2e-3)
    assert not [name for name in os.listdir(tmp_path / "out") if ".tmp" in name]


def test_cli_without_input_uses_the_astronaut(tmp_path):
    result = _run_cli("-s", "sample.png", "-w", "--detector", "full", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert os.path.isfile(tmp_path / "sample.png")
    with open(tmp_path / "sample.json", encoding="utf-8") as f:
        _check_record(json.load(f), SAMPLE_PORTRAIT_NAME, 1)


def test_cli_reports_a_missing_input_without_traceback(tmp_path):
    result = _run_cli("-i", str(tmp_path / "missing.jpg"), "-s", str(tmp_path / "o.png"), cwd=str(tmp_path))
    assert result.returncode != 0
    assert "missing.jpg" in result.stderr and "Traceback" not in result.stderr


def test_cli_video_writes_frames_and_jsonl(tmp_path, astronaut_head_grid):
    source = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(source, cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 640))
    for shift in (0, 8, 16):
        writer.write(np.ascontiguousarray(np.roll(astronaut_head_grid, shift, axis=1)))
    writer.release()
    result = _run_cli("-v", source, "-s", str(tmp_path / "out.avi"), "-w", "--max_faces", "2", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()
    with open(tmp_path / "out.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["frame"] for r in records] == [0, 1, 2]
    for record in records:
        _check_record(record, f"frame {record['frame']}", 2)  # --max_faces 2 of the 4 heads
