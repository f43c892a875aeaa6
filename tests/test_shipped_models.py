"""The classifiers shipped in the plugin folder: intact, plain ONNX with the documented contract, and real answers
on the public-domain astronaut portrait (a clean-shaven woman with visible double eyelids)."""
import json

import numpy as np
import onnx
import pytest

from face_recognition.ax_facial_features.classifiers import DEFAULT_MANIFEST, load_manifest
from face_recognition.ax_facial_features.crops import crop_size
from face_recognition.ax_facial_features.unclear import Gate
from face_recognition.ax_facial_features.pipeline import FaceFeatures, FacialFeatures
from util.model_utils import model_path, verify_file

OWN_MODELS = load_manifest(DEFAULT_MANIFEST)["own"]


def test_every_task_has_a_shipped_model_with_its_unclear_output_and_gate():
    served = {out.task for spec in OWN_MODELS for out in spec.outputs}
    tasks = ("eyelids", "eyelashes", "facial_hair", "per_eye_eyelid")
    assert served == set(tasks) | {f"{task}_unclear" for task in tasks}
    gates = json.load(open(DEFAULT_MANIFEST, encoding="utf-8"))["sets"]["own"]["gates"]
    assert set(gates) == set(tasks)
    for gate in gates.values():  # fitted by scripts/training/gates.py, with their cross-validated figures
        Gate.from_dict(gate)
        assert 0 < gate["cv"]["precision"]["mean"] <= 1 and 0 < gate["cv"]["recall"]["mean"] <= 1


@pytest.mark.parametrize("spec", OWN_MODELS, ids=lambda spec: spec.file)
def test_shipped_model_is_intact_plain_onnx_with_the_contract(spec):
    path = model_path(spec.file, DEFAULT_MANIFEST)
    verify_file(path, spec.sha256)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17
    assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}  # standard ops only (ailia-loadable)
    (graph_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    size = crop_size(spec.crop)  # 256 for the face and eye band, 128 for the per-eye model
    assert graph_input.name == "input" and dims[1:] == [3, size, size] and isinstance(dims[0], str)  # dynamic batch
    assert {o.name for o in model.graph.output} == {out.output for out in spec.outputs}


def test_shipped_models_on_the_astronaut(astronaut_bgr):
    faces = FacialFeatures(force_onnx=True, per_eye=True).process(astronaut_bgr)
    assert len(faces) == 1
    results = faces[0].results
    assert results["eyelids"].label == "double"
    assert results["facial_hair"].labels == []
    assert max(results["facial_hair"].probs.values()) < 0.2
    # a sharp, frontal, open-eyed portrait: every answer is judged clear, and both eyes are double
    assert {task: result.status for task, result in results.items()} == dict.fromkeys(results, "ok")
    assert all(0 <= result.unclear_score <= 1 for result in results.values())
    assert {eye: r.label for eye, r in faces[0].per_eye.items()} == {"left": "double", "right": "double"}
    assert faces[0].eyelids_type == "double"


def test_batch_equals_single_runs(astronaut_bgr, astronaut_head_grid):
    analyser = FacialFeatures(force_onnx=True)
    batch = analyser.process(astronaut_head_grid)
    singles = [analyser.classify([FaceFeatures(mesh=face.mesh, crops=face.crops)]) for face in batch]
    for together, alone in zip(batch, singles):
        for task, result in together.results.items():
            assert np.allclose(list(result.probs.values()), list(alone[0].results[task].probs.values()), atol=1e-5)
