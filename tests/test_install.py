"""Installing a trained ONNX as one of the plugin's own models: file copied, manifest entry written, usable."""
import json
import os
import shutil

import pytest

from face_recognition.ax_facial_features.classifiers import DEFAULT_MANIFEST
from face_recognition.ax_facial_features.pipeline import FacialFeatures
from scripts.training.install import install_model
from util.errors import ModelError
from util.file_utils import sha256_of_file


def test_install_writes_manifest_entries_the_plugin_loads(tmp_path, contract_manifest, astronaut_bgr):
    manifest = tmp_path / "manifest.json"
    shutil.copyfile(DEFAULT_MANIFEST, manifest)
    models = os.path.dirname(contract_manifest)
    install_model(os.path.join(models, "test_eyes.onnx"), "eyes", "eyes.onnx", "test", str(manifest))
    install_model(os.path.join(models, "test_face.onnx"), "facial_hair", "hair.onnx", "test", str(manifest))
    again = install_model(os.path.join(models, "test_eyes.onnx"), "eyes", "eyes.onnx", "again", str(manifest))
    own_set = json.loads(manifest.read_text())["sets"]["own"]
    own = own_set["models"]
    # re-installing replaces, never duplicates; the per-eye model (another group) stays
    assert sorted(m["file"] for m in own) == ["ax_facial_features_per_eye_mobilenetv2.onnx", "eyes.onnx", "hair.onnx"]
    # the replaced models' gates went with them (they were fitted on their unclear outputs)
    assert set(own_set["gates"]) == {"per_eye_eyelid"}
    assert again["sha256"] == sha256_of_file(str(tmp_path / "eyes.onnx"))
    assert again["outputs"] == {"eyelids": {"output": "eyelids", "activation": "softmax"},
                                "eyelashes": {"output": "eyelashes", "activation": "softmax"}}
    faces = FacialFeatures(manifest_path=str(manifest), force_onnx=True).process(astronaut_bgr)
    assert len(faces) == 1 and set(faces[0].results) == {"eyelids", "eyelashes", "facial_hair"}


def test_install_refuses_a_model_without_the_task_outputs(tmp_path, contract_manifest):
    manifest = tmp_path / "manifest.json"
    shutil.copyfile(DEFAULT_MANIFEST, manifest)
    with pytest.raises(ModelError, match="eyelids"):
        install_model(os.path.join(os.path.dirname(contract_manifest), "test_face.onnx"), "eyes", "x.onnx", "t",
                      str(manifest))
