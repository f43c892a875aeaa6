"""ax_facial_features: the library pipeline and the command line, end to end on real images and real face models.

Classifiers here are the tiny contract models from contract_models.py (fixed functions of the crop), so the tests
check what the plugin does around the models: which crop feeds which output, records, files, exit codes.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face_recognition.ax_facial_features.constants import CLASS_NAMES, EYE_BAND, FACE, TASKS
from face_recognition.ax_facial_features.crops import make_crop, preprocess
from face_recognition.ax_facial_features.pipeline import FacialFeatures
from tests.conftest import REPO_ROOT, write_image
from util.backend import create_backend
from util.errors import ModelError

SCRIPT = os.path.join(REPO_ROOT, "face_recognition", "ax_facial_features", "ax_facial_features.py")


@pytest.fixture(scope="module")
def analyser(contract_manifest):
    return FacialFeatures(manifest_path=contract_manifest, force_onnx=True)


def test_astronaut_has_exactly_one_face_with_all_tasks(analyser, astronaut_bgr):
    faces = analyser.process(astronaut_bgr)
    assert len(faces) == 1
    face = faces[0]
    assert set(face.results) == set(TASKS)
    for task in ("eyelids", "eyelashes"):
        probs = face.results[task].probs
        assert list(probs) == list(CLASS_NAMES[task]) and abs(sum(probs.values()) - 1) < 1e-6
        assert face.results[task].label == max(probs, key=probs.get)
    hair = face.results["facial_hair"]
    assert all(0 <= p <= 1 for p in hair.probs.values())
    assert hair.labels == [n for n in CLASS_NAMES["facial_hair"] if hair.probs[n] >= 0.5]


def test_each_crop_feeds_its_own_model_output(analyser, astronaut_bgr, contract_manifest):
    face = analyser.process(astronaut_bgr)[0]
    folder = os.path.dirname(contract_manifest)
    eyes = create_backend(os.path.join(folder, "test_eyes.onnx"), force_onnx=True)
    hair = create_backend(os.path.join(folder, "test_face.onnx"), force_onnx=True)
    eye_band = preprocess([make_crop(astronaut_bgr, face.mesh.landmarks, EYE_BAND).image])
    face_crop = preprocess([make_crop(astronaut_bgr, face.mesh.landmarks, FACE).image])
    eyelid_logits, _ = eyes.predict(eye_band)
    expected_double = np.exp(eyelid_logits[0, 0]) / np.exp(eyelid_logits[0]).sum()
    assert face.results["eyelids"].probs["double"] == pytest.approx(expected_double, abs=1e-6)
    assert face.results["facial_hair"].probs["beard"] == pytest.approx(hair.predict(face_crop)[0][0, 1], abs=1e-6)
    assert np.allclose(face.roi, face.crops[FACE].corners)


def test_grid_of_four_faces(analyser, astronaut_head_grid):
    faces = analyser.process(astronaut_head_grid)
    assert len(faces) == 4
    half = astronaut_head_grid.shape[0] // 2
    centres = sorted((int(f.roi.mean(axis=0)[1] > half), int(f.roi.mean(axis=0)[0] > half)) for f in faces)
    assert centres == [(0, 0), (0, 1), (1, 0), (1, 1)]  # one face per quadrant


def test_mode_subset_runs_only_requested_tasks(contract_manifest, astronaut_bgr):
    faces = FacialFeatures(["facial_hair"], manifest_path=contract_manifest, force_onnx=True).process(astronaut_bgr)
    assert list(faces[0].results) == ["facial_hair"]


def test_image_without_face_gives_empty_list(analyser):
    assert analyser.process(np.full((240, 320, 3), 127, np.uint8)) == []


def test_missing_classifier_files_stop_with_a_clear_error(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"sets": {"own": {"models": [
        {"file": "missing.onnx", "crop": "face", "outputs": {"facial_hair": {"output": 0}}}]}}}))
    with pytest.raises(ModelError, match="missing.onnx"):
        FacialFeatures(["facial_hair"], manifest_path=str(manifest), force_onnx=True)


# ---- command line -----------------------------------------------------------------------------------------------
def run_cli(*args, cwd=None):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def check_record(record, tasks=TASKS):
    assert record["schema"] == "ax_facial_features/1"
    assert set(record["models"]) == set(tasks)
    for face in record["faces"]:
        assert len(face["roi"]) == 4 and 0 <= face["detection_score"] <= 1
        for task in tasks:
            assert list(face[task]["probs"]) == list(CLASS_NAMES[task])
        assert set(face) == {"detection_score", "roi", *tasks}


def test_cli_image_writes_annotated_image_and_json(tmp_path, astronaut_bgr, contract_manifest):
    source = str(tmp_path / "astronaut.png")
    write_image(source, astronaut_bgr)
    out = tmp_path / "out" / "annotated.png"
    result = run_cli("-i", source, "-s", str(out), "-w", "--manifest", contract_manifest, "--onnx")
    assert result.returncode == 0, result.stderr
    saved = cv2.imread(str(out))
    assert saved.shape == astronaut_bgr.shape and not np.array_equal(saved, astronaut_bgr)  # drawn on
    record = json.loads((tmp_path / "out" / "annotated.json").read_text())
    check_record(record)
    assert record["image"] == source and (record["width"], record["height"]) == (512, 512)
    assert len(record["faces"]) == 1
    assert "Eyelids" in result.stderr and "prob =" in result.stderr  # printed like the original


def test_cli_default_sample_is_the_astronaut(tmp_path, contract_manifest):
    result = run_cli("-w", "--manifest", contract_manifest, "-m", "eyelids", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "output.json").read_text())
    assert record["image"] == "astronaut (scikit-image sample)" and len(record["faces"]) == 1
    check_record(record, ["eyelids"])


def test_cli_folder_writes_one_result_per_image_and_jsonl(tmp_path, astronaut_bgr, astronaut_head_grid,
                                                           contract_manifest):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(str(folder / "a.jpg"), astronaut_bgr)
    write_image(str(folder / "b.png"), astronaut_head_grid)
    write_image(str(folder / "empty.png"), np.full((64, 64, 3), 90, np.uint8))
    out = tmp_path / "results"
    result = run_cli("-i", str(folder), "-s", str(out), "-w", "--manifest", contract_manifest)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == ["a_res.json", "a_res.png", "b_res.json", "b_res.png",
                                       "empty_res.json", "empty_res.png", "results.jsonl"]
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [len(r["faces"]) for r in lines] == [1, 4, 0]
    for record in lines:
        check_record(record)


def test_cli_batch_reports_bad_file_and_processes_the_rest(tmp_path, astronaut_bgr, contract_manifest):
    good = str(tmp_path / "good.png")
    write_image(good, astronaut_bgr)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    result = run_cli("-i", good, str(bad), "-s", str(tmp_path / "out/"), "--manifest", contract_manifest)
    assert result.returncode == 1
    assert "bad.jpg: not a readable image" in result.stderr and "Traceback" not in result.stderr
    assert "1 image(s) succeeded, 1 failed" in result.stderr
    assert os.listdir(tmp_path / "out") == ["good_res.png"]


def test_cli_video_writes_video_and_jsonl(tmp_path, astronaut_bgr, contract_manifest):
    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for shift in range(5):
        writer.write(np.roll(astronaut_bgr, shift * 4, axis=1))
    writer.release()
    out = str(tmp_path / "annotated.mp4")
    result = run_cli("-v", video, "-s", out, "-w", "--manifest", contract_manifest)
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(out)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    lines = [json.loads(line) for line in open(os.path.join(tmp_path, "annotated.jsonl"))]
    assert [r["frame"] for r in lines] == [0, 1, 2, 3, 4] and all(len(r["faces"]) == 1 for r in lines)
    assert {r["faces"][0]["track_id"] for r in lines} == {0}  # one face, tracked across frames
    assert sorted(os.listdir(tmp_path)) == ["annotated.jsonl", "annotated.mp4", "clip.avi"]


def test_cli_missing_input_fails_with_one_line(tmp_path, contract_manifest):
    result = run_cli("-i", str(tmp_path / "nope.jpg"), "-s", str(tmp_path / "o.png"), "--manifest",
                     contract_manifest)
    assert result.returncode == 1 and "nope.jpg: no such file" in result.stderr
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "o.png")


def test_cli_env_list_without_ailia_licence_says_why():
    result = run_cli("--env_list")
    assert result.returncode == 0 and ("env_id" in result.stdout or "unavailable" in result.stdout)


def test_cli_empty_folder_beside_a_good_image_is_one_failure(tmp_path, astronaut_bgr, contract_manifest):
    good = str(tmp_path / "good.png")
    write_image(good, astronaut_bgr)
    (tmp_path / "empty").mkdir()
    result = run_cli("-i", str(tmp_path / "empty"), good, "-s", str(tmp_path / "out/"), "--manifest",
                     contract_manifest)
    assert result.returncode == 1 and "empty: folder contains no images" in result.stderr
    assert os.listdir(tmp_path / "out") == ["good_res.png"]
