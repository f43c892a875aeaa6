"""Tiny ONNX classifiers with the plugin's exact I/O contract, for tests only (never installed as defaults).

They compute fixed linear functions of the per-channel mean of the crop, so their outputs are real, deterministic
functions of the input: tests can check that the plugin feeds each crop to the right model and output.
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


def build_model(path, heads):
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
                          [oh.make_tensor_value_info("input", onnx.TensorProto.FLOAT, INPUT_SHAPE)],
                          outputs, initializers)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def build_contract_models(folder):
    """Writes an eye model (eyelids + eyelashes heads), a facial-hair model and their manifest; returns its path."""
    os.makedirs(folder, exist_ok=True)
    eyes = os.path.join(folder, "test_eyes.onnx")
    face = os.path.join(folder, "test_face.onnx")
    build_model(eyes, [("eyelids", 2, 1, None), ("eyelashes", 3, 2, None)])
    build_model(face, [("facial_hair", 3, 3, "Sigmoid")])
    manifest = {"schema": "ax_facial_features-manifest/1", "sets": {"own": {"models": [
        {"file": "test_eyes.onnx", "sha256": sha256_of_file(eyes), "crop": "eye_band",
         "outputs": {"eyelids": {"output": "eyelids", "activation": "softmax"},
                     "eyelashes": {"output": "eyelashes", "activation": "softmax"}}},
        {"file": "test_face.onnx", "sha256": sha256_of_file(face), "crop": "face",
         "outputs": {"facial_hair": {"output": "facial_hair", "activation": "none"}}},
    ]}}}
    path = os.path.join(folder, "manifest.json")
    with open(path, "w") as f:
        json.dump(manifest, f)
    return path
