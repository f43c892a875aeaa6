"""Tiny ONNX classifiers with the plugin's exact I/O contract, for tests only (never installed as defaults).

They compute fixed linear functions of the per-channel mean of the crop, so their outputs are real, deterministic
functions of the input: tests can check that the plugin feeds each crop to the right model and output.
``build_contract_models(folder, unclear=True, per_eye=True, gates=...)`` adds the issue-6 contract: unclear
sigmoid outputs, a per-eye model (N,3,128,128) and unclear gates in the manifest.
"""
import json
import os

import numpy as np
import onnx
import onnx.helper as oh
from onnx import numpy_helper

from util.file_utils import sha256_of_file

INPUT_SHAPE = ["N", 3, 256, 256]


def _linear_head(prefix, classes, seed, activation=None):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(3, classes)).astype(np.float32)
    bias = rng.normal(size=(classes,)).astype(np.float32)
    nodes = [oh.make_node("MatMul", ["pooled", f"{prefix}_w"], [f"{prefix}_mm"]),
             oh.make_node("Add", [f"{prefix}_mm", f"{prefix}_b"], [prefix if activation is None else f"{prefix}_z"])]
    if activation:
        nodes.append(oh.make_node(activation, [f"{prefix}_z"], [prefix]))
    initializers = [numpy_helper.from_array(weight, f"{prefix}_w"), numpy_helper.from_array(bias, f"{prefix}_b")]
    output = oh.make_tensor_value_info(prefix, onnx.TensorProto.FLOAT, ["N", classes])
    return nodes, initializers, output


def build_model(path, heads, input_shape=INPUT_SHAPE):
    """heads: list of (output name, classes, seed, activation or None)."""
    nodes = [oh.make_node("GlobalAveragePool", ["input"], ["gap"]),
             oh.make_node("Flatten", ["gap"], ["pooled"], axis=1)]
    initializers, outputs = [], []
    for name, classes, seed, activation in heads:
        head_nodes, head_init, output = _linear_head(name, classes, seed, activation)
        nodes += head_nodes
        initializers += head_init
        outputs.append(output)
    graph = oh.make_graph(nodes, "contract_classifier",
                          [oh.make_tensor_value_info("input", onnx.TensorProto.FLOAT, input_shape)],
                          outputs, initializers)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _model_entry(folder, file, crop, heads, input_shape=INPUT_SHAPE):
    """Builds one model from ``heads`` and returns its manifest entry (softmax heads have no activation inside)."""
    path = os.path.join(folder, file)
    build_model(path, heads, input_shape)
    outputs = {name: {"output": name, "activation": "softmax" if activation is None else "none"}
               for name, _, _, activation in heads}
    return {"file": file, "sha256": sha256_of_file(path), "crop": crop, "input_size": input_shape[-1],
            "outputs": outputs}


def build_contract_models(folder, unclear=False, per_eye=False, gates=None, name="manifest.json"):
    """Writes an eye model (eyelids + eyelashes heads), a facial-hair model and their manifest; returns its path.
    ``unclear``: the eye and face models also have the unclear outputs; ``per_eye``: a per-eye model (crop "eye",
    128 px, with its unclear output when ``unclear``); ``gates``: the set's gates ({task: Gate dict})."""
    os.makedirs(folder, exist_ok=True)
    eye_heads = [("eyelids", 2, 1, None), ("eyelashes", 3, 2, None)]
    face_heads = [("facial_hair", 3, 3, "Sigmoid")]
    per_eye_heads = [("per_eye_eyelid", 2, 4, None)]
    if unclear:
        eye_heads += [("eyelids_unclear", 1, 5, "Sigmoid"), ("eyelashes_unclear", 1, 6, "Sigmoid")]
        face_heads += [("facial_hair_unclear", 1, 7, "Sigmoid")]
        per_eye_heads += [("per_eye_eyelid_unclear", 1, 8, "Sigmoid")]
    models = [_model_entry(folder, "test_eyes.onnx", "eye_band", eye_heads),
              _model_entry(folder, "test_face.onnx", "face", face_heads)]
    if per_eye:
        models.append(_model_entry(folder, "test_per_eye.onnx", "eye", per_eye_heads, ["N", 3, 128, 128]))
    own = {"models": models}
    if gates:
        own["gates"] = gates
    manifest = {"schema": "ax_facial_features-manifest/1", "sets": {"own": own}}
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        json.dump(manifest, f)
    return path
