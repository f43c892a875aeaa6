"""The classifiers shipped in the plugin folder: intact, plain ONNX with the documented contract, and real answers
on the public-domain astronaut portrait (a clean-shaven woman with visible double eyelids)."""
import numpy as np
import onnx
import pytest

from face_recognition.ax_facial_features.classifiers import DEFAULT_MANIFEST, load_manifest
from face_recognition.ax_facial_features.pipeline import FaceFeatures, FacialFeatures
from util.model_utils import model_path, verify_file

OWN_MODELS = load_manifest(DEFAULT_MANIFEST)["own"]


def test_every_task_has_a_shipped_model():
    assert {out.task for spec in OWN_MODELS for out in spec.outputs} == {"eyelids", "eyelashes", "facial_hair"}


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
    assert graph_input.name == "input" and dims[1:] == [3, 256, 256] and isinstance(dims[0], str)  # dynamic batch
    assert {o.name for o in model.graph.output} == {out.output for out in spec.outputs}


def test_shipped_models_on_the_astronaut(astronaut_bgr):
    faces = FacialFeatures(force_onnx=True).process(astronaut_bgr)
    assert len(faces) == 1
    results = faces[0].results
    assert results["eyelids"].label == "double"
    assert results["facial_hair"].labels == []
    assert max(results["facial_hair"].probs.values()) < 0.2


def test_batch_equals_single_runs(astronaut_bgr, astronaut_head_grid):
    analyser = FacialFeatures(force_onnx=True)
    batch = analyser.process(astronaut_head_grid)
    singles = [analyser.classify([FaceFeatures(mesh=face.mesh, crops=face.crops)]) for face in batch]
    for together, alone in zip(batch, singles):
        for task, result in together.results.items():
            assert np.allclose(list(result.probs.values()), list(alone[0].results[task].probs.values()), atol=1e-5)
