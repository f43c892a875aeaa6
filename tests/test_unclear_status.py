"""Issue 6, plugin side: each answer's status (ok / unclear, from the manifest's gates or the model's own unclear
output), per-eye eyelids with the face's eyelid type, and how they reach JSON, console, drawing and video.

Classifiers are the contract models (tests/contract_models.py: fixed functions of the crop) with unclear outputs and
a per-eye model; the gates below are chosen so that both outcomes occur on the real astronaut photo.
"""
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from face_recognition.ax_facial_features.classifiers import Classifiers
from face_recognition.ax_facial_features.constants import (
    EYE_CROP_KINDS, FACE, PER_EYE_EYELID, STATUS_OK, STATUS_UNCLEAR, SUBJECT_LEFT, SUBJECT_RIGHT, TASKS)
from face_recognition.ax_facial_features.crops import preprocess
from face_recognition.ax_facial_features.drawing import TASK_COLOURS, UNCLEAR_COLOUR, draw_results
from face_recognition.ax_facial_features.geometry import face_geometry
from face_recognition.ax_facial_features.pipeline import (
    FacialFeatures, VideoAnalyser, combine_eyelid_types, make_task_result)
from face_recognition.ax_facial_features.report import face_record, log_results
from face_recognition.ax_facial_features.unclear import REASONS, EYE_OPENNESS, Gate, gate_signals
from tests.contract_models import build_contract_models
from tests.conftest import write_image
from tests.test_plugin import run_cli
from util.backend import create_backend
from util.errors import ModelError

# Eyelids: a gate that takes an openness of 1.0 for normal, so the astronaut's open eyes (~0.33) read as closed:
# unclear, for that reason. Eyelashes: a strongly negative bias: ok. Facial hair: no gate (the model's own output).
# Per-eye: ok, with a score that depends on each eye's own openness.
GATES = {
    "eyelids": {"features": ["eye_openness", "abs_yaw_degrees"], "mean": [1.0, 0.0], "scale": [0.1, 100.0],
                "weights": [-1.0, 0.01], "bias": 0.0, "threshold": 0.5, "cv": {"auc": 0.8}},
    "eyelashes": {"features": ["model_logit", "log2_source_width"], "mean": [0.0, 6.0], "scale": [1.0, 1.0],
                  "weights": [1.0, -0.5], "bias": -10.0, "threshold": 0.5},
    "per_eye_eyelid": {"features": ["eye_openness"], "mean": [0.3], "scale": [0.1], "weights": [-10.0],
                       "bias": -10.0, "threshold": 0.5},
}


@pytest.fixture(scope="module")
def gated_manifest(tmp_path_factory):
    return build_contract_models(str(tmp_path_factory.mktemp("gated_models")), unclear=True, per_eye=True,
                                 gates=GATES)


@pytest.fixture(scope="module")
def gated(gated_manifest):
    return FacialFeatures(manifest_path=gated_manifest, force_onnx=True, per_eye=True)


@pytest.fixture(scope="module")
def gated_face(gated, astronaut_bgr):
    faces = gated.process(astronaut_bgr)
    assert len(faces) == 1
    return faces[0]


def test_models_without_unclear_outputs_answer_ok(contract_manifest, astronaut_bgr):
    face = FacialFeatures(manifest_path=contract_manifest, force_onnx=True).process(astronaut_bgr)[0]
    for task in TASKS:
        result = face.results[task]
        assert (result.status, result.reason, result.unclear_score) == (STATUS_OK, None, None)
        entry = face_record(face, TASKS)[task]
        assert entry["status"] == STATUS_OK and "reason" not in entry and "unclear_score" not in entry
    assert face.per_eye is None and face.eyelids_type is None


def test_gates_decide_status_and_reason_and_keep_the_answer(gated_face):
    eyelids, eyelashes = gated_face.results["eyelids"], gated_face.results["eyelashes"]
    assert (eyelids.status, eyelids.reason) == (STATUS_UNCLEAR, REASONS[EYE_OPENNESS])
    assert eyelids.unclear_score >= 0.5
    # Unclear answers still carry their probabilities and label.
    assert abs(sum(eyelids.probs.values()) - 1) < 1e-6 and eyelids.label == max(eyelids.probs, key=eyelids.probs.get)
    assert (eyelashes.status, eyelashes.reason) == (STATUS_OK, None) and eyelashes.unclear_score < 0.5


def test_without_a_gate_the_models_unclear_output_decides(gated_face, gated_manifest, astronaut_bgr):
    hair_model = create_backend(os.path.join(os.path.dirname(gated_manifest), "test_face.onnx"), force_onnx=True)
    _, unclear = hair_model.predict(preprocess([gated_face.crops[FACE].image]))
    result = gated_face.results["facial_hair"]
    assert result.unclear_score == pytest.approx(float(unclear[0, 0]), abs=1e-6)
    assert result.status == (STATUS_UNCLEAR if result.unclear_score >= 0.5 else STATUS_OK)
    assert (result.reason is None) == (result.status == STATUS_OK)


def test_per_eye_results_on_the_astronaut(gated_face, gated_manifest):
    per_eye = gated_face.per_eye
    assert set(per_eye) == {SUBJECT_RIGHT, SUBJECT_LEFT}
    # Each eye's probabilities are the per-eye model's on that eye's crop (the left one mirrored by make_crop).
    model = create_backend(os.path.join(os.path.dirname(gated_manifest), "test_per_eye.onnx"), force_onnx=True)
    eyes = [gated_face.crops[EYE_CROP_KINDS[eye]].image for eye in (SUBJECT_RIGHT, SUBJECT_LEFT)]
    logits, _ = model.predict(preprocess(eyes))
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert per_eye[SUBJECT_RIGHT].probs["double"] == pytest.approx(expected[0, 0], abs=1e-6)
    assert per_eye[SUBJECT_LEFT].probs["double"] == pytest.approx(expected[1, 0], abs=1e-6)
    # Each eye is gated on its own openness and its own crop's width.
    gate = Gate.from_dict(GATES[PER_EYE_EYELID])
    geometry = face_geometry(gated_face.mesh.landmarks)
    for eye, result in per_eye.items():
        assert result.task == PER_EYE_EYELID and result.status == STATUS_OK
        width = gated_face.crops[EYE_CROP_KINDS[eye]].source_size[0]
        assert result.unclear_score == pytest.approx(gate.score(gate_signals(0.5, geometry, width, eye=eye)))
    assert per_eye[SUBJECT_RIGHT].unclear_score != per_eye[SUBJECT_LEFT].unclear_score
    labels = {result.label for result in per_eye.values()}
    assert gated_face.eyelids_type == (labels.pop() if len(labels) == 1 else "hybrid")


def test_eyelid_type_combination():
    # Constructed per-eye results (not a measurement): the combination rule alone.
    double = make_task_result(PER_EYE_EYELID, [0.9, 0.1])
    single = make_task_result(PER_EYE_EYELID, [0.2, 0.8])
    unclear_single = make_task_result(PER_EYE_EYELID, [0.2, 0.8], decision=(STATUS_UNCLEAR, "eyes closed", 0.9))
    assert combine_eyelid_types({"right": double, "left": single}) == "hybrid"
    assert combine_eyelid_types({"right": single, "left": single}) == "single"
    assert combine_eyelid_types({"right": double, "left": double}) == "double"
    assert combine_eyelid_types({"right": double, "left": unclear_single}) == "unclear"


def test_json_record_and_console(gated_face, gated):
    record = json.loads(json.dumps(face_record(gated_face, gated.tasks)))
    assert record["eyelids"]["status"] == STATUS_UNCLEAR and record["eyelids"]["reason"] == REASONS[EYE_OPENNESS]
    assert record["eyelashes"]["status"] == STATUS_OK and "reason" not in record["eyelashes"]
    assert 0 <= record["eyelids"]["unclear_score"] <= 1
    assert set(record["eyelids_per_eye"]) == {"left", "right"}
    for eye in ("left", "right"):
        entry = record["eyelids_per_eye"][eye]
        assert list(entry["probs"]) == ["double", "single"] and entry["label"] in ("double", "single")
        assert entry["status"] == STATUS_OK and "reason" not in entry
    assert record["eyelids_type"] == gated_face.eyelids_type
    lines = []

    class Log:
        info = staticmethod(lines.append)

    log_results([gated_face], gated.tasks, log=Log)
    assert f"status = unclear ({REASONS[EYE_OPENNESS]})" in "\n".join(lines)
    assert "Eyelids, subject's right eye" in lines and f"Eyelids type (per eye) = {gated_face.eyelids_type}" in lines


def _drawn(corners, canvas, mirror):
    """Corners as drawn on the canvas (x flipped in a mirror)."""
    corners = np.array(corners, dtype=np.float64)
    if mirror:
        corners[:, 0] = canvas.shape[1] - 1 - corners[:, 0]
    return corners


def _pixel_at(canvas, x, y):
    """A pixel inside a box whose top-left is (x, y), left of its text."""
    x = int(np.clip(x, 2, canvas.shape[1] - 2))
    y = int(np.clip(y, 2, canvas.shape[0] - 2))
    return tuple(int(v) for v in canvas[y + 1, x + 1])


def _task_box_pixel(canvas, face, mirror=False):
    """Inside the first (eyelids) score box, drawn at the ROI's top-left."""
    roi = _drawn(face.roi, canvas, mirror)
    return _pixel_at(canvas, roi[:, 0].min(), roi[:, 1].min())


def _eye_box_pixel(canvas, face, eye, mirror=False):
    """Inside the eye's small box, drawn level with the eye just outside its crop, away from the face's centre."""
    corners = _drawn(face.crops[EYE_CROP_KINDS[eye]].corners, canvas, mirror)
    outward_left = corners[:, 0].mean() < _drawn(face.roi, canvas, mirror)[:, 0].mean()
    x = corners[:, 0].min() - 2 if outward_left else corners[:, 0].max() + 1
    return tuple(int(v) for v in canvas[int(corners[:, 1].mean()), int(x)])


def test_unclear_box_is_drawn_grey(gated_face, gated, contract_manifest, astronaut_bgr):
    clear_face = FacialFeatures(manifest_path=contract_manifest, force_onnx=True).process(astronaut_bgr)[0]
    assert _task_box_pixel(draw_results(astronaut_bgr, [clear_face], TASKS), clear_face) == TASK_COLOURS["eyelids"]
    for mirror in (False, True):
        canvas = draw_results(astronaut_bgr, [gated_face], gated.tasks, mirror=mirror)
        assert _task_box_pixel(canvas, gated_face, mirror) == UNCLEAR_COLOUR
        for eye in (SUBJECT_RIGHT, SUBJECT_LEFT):  # both eyes ok: eyelid colour
            assert _eye_box_pixel(canvas, gated_face, eye, mirror) == TASK_COLOURS["eyelids"]
    # An unclear eye is greyed too (constructed: the same face with its left eye's status set to unclear).
    face = replace(gated_face, per_eye=dict(gated_face.per_eye))
    face.per_eye[SUBJECT_LEFT] = replace(face.per_eye[SUBJECT_LEFT], status=STATUS_UNCLEAR, reason="constructed")
    face.eyelids_type = combine_eyelid_types(face.per_eye)
    canvas = draw_results(astronaut_bgr, [face], gated.tasks)
    assert _eye_box_pixel(canvas, face, SUBJECT_LEFT) == UNCLEAR_COLOUR
    assert _eye_box_pixel(canvas, face, SUBJECT_RIGHT) == TASK_COLOURS["eyelids"]


def test_video_smoothing_keeps_status_and_per_eye(gated, astronaut_bgr):
    video = VideoAnalyser(gated, smoothing=0.5)
    for shift in (0, 4, 8):
        face = video.process(np.roll(astronaut_bgr, shift, axis=1))[0]
        assert face.results["eyelids"].status == STATUS_UNCLEAR and face.results["eyelids"].reason
        assert set(face.per_eye) == {SUBJECT_RIGHT, SUBJECT_LEFT}
        assert face.eyelids_type == combine_eyelid_types(face.per_eye)
        assert all(abs(sum(r.probs.values()) - 1) < 1e-6 for r in face.per_eye.values())


def test_cli_per_eye_writes_per_eye_json(tmp_path, astronaut_bgr, gated_manifest):
    source = str(tmp_path / "astronaut.png")
    write_image(source, astronaut_bgr)
    result = run_cli("-i", source, "-s", str(tmp_path / "out.png"), "-w", "--per-eye", "--manifest", gated_manifest)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "out.json").read_text())
    assert set(record["models"]) == set(TASKS) | {PER_EYE_EYELID}
    face = record["faces"][0]
    assert set(face) == {"detection_score", "roi", *TASKS, "eyelids_per_eye", "eyelids_type"}
    assert face["eyelids"]["status"] == STATUS_UNCLEAR
    labels = {face["eyelids_per_eye"][eye]["label"] for eye in ("left", "right")}
    assert face["eyelids_type"] == (labels.pop() if len(labels) == 1 else "hybrid")
    assert "Eyelids, subject's left eye" in result.stderr


def test_per_eye_without_a_per_eye_model_is_a_model_error(contract_manifest):
    with pytest.raises(ModelError, match="per_eye_eyelid"):
        Classifiers(per_eye=True, manifest_path=contract_manifest, force_onnx=True)


@pytest.mark.parametrize("name, change, message", [
    ("bad_gate.json", lambda m: m["sets"]["own"]["gates"]["eyelids"].update(threshold=1.5), "malformed gate"),
    ("unknown_signal.json", lambda m: m["sets"]["own"]["gates"]["eyelids"].update(
        features=["eye_colour", "abs_yaw_degrees"]), "malformed gate"),
    ("gate_task.json", lambda m: m["sets"]["own"]["gates"].update(moustache=GATES["eyelids"]), "unknown task"),
    ("input_size.json", lambda m: m["sets"]["own"]["models"][2].update(input_size=256), "input_size 256"),
])
def test_malformed_manifests_are_one_model_error(gated_manifest, tmp_path, name, change, message):
    with open(gated_manifest) as f:
        manifest = json.load(f)
    change(manifest)
    path = os.path.join(os.path.dirname(gated_manifest), name)
    with open(path, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ModelError, match=message):
        Classifiers(per_eye=True, manifest_path=path, force_onnx=True)


def test_gate_reading_a_missing_unclear_output_is_a_model_error(tmp_path):
    path = build_contract_models(str(tmp_path), gates={"eyelashes": GATES["eyelashes"]})
    with pytest.raises(ModelError, match="eyelashes_unclear"):
        Classifiers(manifest_path=path, force_onnx=True)
