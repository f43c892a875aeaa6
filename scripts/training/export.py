"""ONNX export of a trained classifier, and its check against torch.

Contract (what the plugin loads): opset 17, standard ONNX ops only, input ``input`` (N, 3, 256, 256) float32 with a
dynamic batch axis ((N, 3, 128, 128) for the per-eye model); outputs named after the tasks, in this order:
``eyelids`` (N, 2) logits and ``eyelashes`` (N, 3) logits for the eye model, ``facial_hair`` (N, 3) sigmoid
probabilities for the facial-hair model, ``per_eye_eyelid`` (N, 2) logits for the per-eye model; then each
task's ``<task>_unclear`` (N, 1) sigmoid probability when trained with unclear heads. Weights are float32
(MobileNetV2 ~9 MB, EfficientNet-Lite0 ~14 MB); ``fp16_weights`` stores the large ones as float16 with a Cast
back to float32 (half the file, e.g. for ResNet50's ~94 MB; compute stays float32).
"""
import logging
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from face_recognition.ax_facial_features.constants import CLASSIFIER_INPUT_SIZE
from scripts.training.models import ExportModel
from util.backend import create_backend
from util.file_utils import atomic_output

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
TOLERANCE = {False: 1e-4, True: 5e-2}  # max |onnx - torch| allowed, by fp16_weights


def export_onnx(model, path, opset=OPSET, fp16_weights=False, input_size=CLASSIFIER_INPUT_SIZE, flip_average=False):
    """Write ``model`` (a MultiHeadModel) as ONNX (``flip_average``: see ``ExportModel``); returns the output
    names."""
    wrapper = ExportModel(model, flip_average).eval()
    outputs = list(wrapper.tasks)
    dummy = torch.zeros(1, 3, input_size, input_size)
    dynamic = {name: {0: "batch"} for name in [INPUT_NAME, *outputs]}
    with atomic_output(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter is the one that needs no onnxscript; its deprecation notice is noise here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (dummy,), tmp, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
        exported = onnx.load(tmp)
        if fp16_weights:
            store_weights_fp16(exported)
            onnx.save(exported, tmp)
        onnx.checker.check_model(exported, full_check=True)
    return outputs


def store_weights_fp16(model, min_elements=1024):
    """In place: float32 initializers of at least ``min_elements`` values become float16 initializers, each
    cast back to float32 by a Cast node at the start of the graph (under its original name)."""
    graph = model.graph
    initializers, casts = [], []
    for initializer in graph.initializer:
        if initializer.data_type == onnx.TensorProto.FLOAT and np.prod(initializer.dims) >= min_elements:
            half = numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16),
                                           f"{initializer.name}_fp16")
            initializers.append(half)
            casts.append(helper.make_node("Cast", [half.name], [initializer.name], to=onnx.TensorProto.FLOAT))
        else:
            initializers.append(initializer)
    nodes = casts + list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(nodes)


def non_standard_ops(path):
    """Ops outside the default ONNX domain (should be empty)."""
    graph = onnx.load(path).graph
    return sorted({f"{node.domain}::{node.op_type}" for node in graph.node if node.domain not in ("", "ai.onnx")})


def verify_onnx(model, path, batch_sizes=(1, 3), seed=0, input_size=CLASSIFIER_INPUT_SIZE, flip_average=False):
    """Max |onnxruntime - torch| per output for random inputs of each batch size (dynamic batch check)."""
    wrapper = ExportModel(model, flip_average).eval()
    backend = create_backend(path, force_onnx=True)
    rng = np.random.default_rng(seed)
    report = {"output_names": list(backend.output_names), "input_names": list(backend.input_names),
              "non_standard_ops": non_standard_ops(path), "max_abs_diff": {}}
    for batch in batch_sizes:
        x = rng.standard_normal((batch, 3, input_size, input_size)).astype(np.float32)
        onnx_outputs = backend.predict(x)
        with torch.no_grad():
            torch_outputs = [o.numpy() for o in wrapper(torch.from_numpy(x))]
        for name, a, b in zip(wrapper.tasks, onnx_outputs, torch_outputs):
            if a.shape != b.shape:
                raise AssertionError(f"{name}: onnx shape {a.shape} != torch shape {b.shape}")
            diff = float(np.max(np.abs(a - b)))
            report["max_abs_diff"][name] = max(diff, report["max_abs_diff"].get(name, 0.0))
    return report


def export_and_verify(model, path, fp16_weights=False, input_size=CLASSIFIER_INPUT_SIZE, flip_average=False):
    """Export, then check names, standard ops and numerical agreement; returns the verification report."""
    outputs = export_onnx(model, path, fp16_weights=fp16_weights, input_size=input_size, flip_average=flip_average)
    report = verify_onnx(model, path, input_size=input_size, flip_average=flip_average)
    tolerance = TOLERANCE[fp16_weights]
    problems = []
    if report["input_names"] != [INPUT_NAME] or report["output_names"] != outputs:
        problems.append(f"names {report['input_names']} -> {report['output_names']}")
    if report["non_standard_ops"]:
        problems.append(f"non-standard ops {report['non_standard_ops']}")
    worst = max(report["max_abs_diff"].values())
    if worst > tolerance:
        problems.append(f"onnxruntime differs from torch by {worst:.2e} > {tolerance:.0e}")
    if problems:
        raise AssertionError(f"{path}: " + "; ".join(problems))
    logger.info("exported %s (outputs %s), max |onnx - torch| = %.2e", path, outputs, worst)
    return report
