"""util.tflite_to_onnx and face_detection.facemesh.model_files: the mediapipe models converted to ONNX.

Fidelity against a TFLite interpreter runs when one is installed (tflite-runtime / ai-edge-litert); end-to-end
fidelity against mediapipe's own pipeline is in test_facemesh.py and needs no interpreter.
"""
import math
import os

import cv2
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime
import pytest
from hypothesis import given
from hypothesis import strategies as st

from face_detection.facemesh.model_files import (
    ALL_MODELS, DETECTOR_MODELS, LANDMARK_MODEL, MODEL_DIR, convert_model, ensure_models, is_valid_model,
    model_path, source_path)
from util.tflite_to_onnx import (
    OPSET, _same_padding, convert_tflite_file, load_tflite_interpreter, max_abs_differences, operator_names,
    run_tflite, supported_operators)

MODEL_IDS = [m.onnx_name for m in ALL_MODELS]


def face_crop(astronaut_bgr):
    """The astronaut's face with a margin, roughly what the mesh model is fed."""
    return astronaut_bgr[50:210, 145:305]


def _session(path):
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def _model_input(model, image_bgr, size):
    """NCHW float32 batch-1 RGB input in the model's range."""
    low, high = model.input_range
    rgb = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray((rgb / 255.0 * (high - low) + low).transpose(2, 0, 1)[None])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """All three models freshly converted into a temporary folder (also exercises the converter itself)."""
    folder = str(tmp_path_factory.mktemp("converted"))
    return {m.onnx_name: convert_model(m, folder) for m in ALL_MODELS}


def test_converter_supports_exactly_the_operators_the_models_use():
    used = [operator_names(source_path(m)) for m in ALL_MODELS]
    assert all(ops <= supported_operators() for ops in used)
    assert set().union(*used) == supported_operators()
    # The full-range model is the one with sparse weights and the up-sampling decoder.
    assert {"DENSIFY", "RESIZE_BILINEAR", "DEPTH_TO_SPACE"} <= used[1]


@pytest.mark.parametrize("model", ALL_MODELS, ids=MODEL_IDS)
def test_converted_graph_follows_the_contract(converted, model):
    proto = onnx.load(converted[model.onnx_name])
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) for t in proto.graph.initializer)
    ops = {node.op_type for node in proto.graph.node}
    assert "DequantizeLinear" not in ops and "Cast" not in ops  # fp16 weights were folded to float32

    def dims(value_info):
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    (graph_input,) = proto.graph.input
    size = 192 if model is not DETECTOR_MODELS["short"] else 128
    batch = "batch" if model.dynamic_batch else 1
    assert graph_input.name == "input" and dims(graph_input) == [batch, 3, size, size]
    anchors = {128: 896, 192: 2304}[size]
    expected = {"regressors": [1, anchors, 16], "classificators": [1, anchors, 1],
                "landmarks": [batch, 1404], "presence": [batch, 1]}
    assert {o.name: dims(o) for o in proto.graph.output} == {n: expected[n] for n in model.output_names}


@pytest.mark.parametrize("model", ALL_MODELS, ids=MODEL_IDS)
def test_outputs_are_finite_with_the_contract_shapes(converted, model, astronaut_bgr):
    session = _session(converted[model.onnx_name])
    size = session.get_inputs()[0].shape[2]
    image = face_crop(astronaut_bgr) if model is LANDMARK_MODEL else astronaut_bgr
    outputs = session.run(None, {"input": _model_input(model, image, size)})
    assert all(np.isfinite(o).all() for o in outputs)
    if model is LANDMARK_MODEL:
        landmarks, presence = outputs
        assert landmarks.shape == (1, 1404) and presence.shape == (1, 1)
        xy = landmarks.reshape(468, 3)[:, :2]
        # An upright face crop: the face is present and its mesh lies inside the crop.
        assert presence[0, 0] > 0 and ((xy > 0) & (xy < size)).all()


def test_mesh_batch_of_two_equals_two_single_runs(converted, astronaut_bgr):
    session = _session(converted[LANDMARK_MODEL.onnx_name])
    upright = _model_input(LANDMARK_MODEL, face_crop(astronaut_bgr), 192)
    flipped = _model_input(LANDMARK_MODEL, cv2.rotate(face_crop(astronaut_bgr), cv2.ROTATE_180), 192)
    together = session.run(None, {"input": np.concatenate([upright, flipped])})
    alone = [session.run(None, {"input": x}) for x in (upright, flipped)]
    assert together[0].shape == (2, 1404) and together[1].shape == (2, 1)
    for k in range(2):
        for i in range(2):
            np.testing.assert_allclose(together[k][i], alone[i][k][0], rtol=0, atol=1e-4)
    assert not np.allclose(together[0][0], together[0][1])  # two different inputs, two different answers


@pytest.mark.parametrize("model", ALL_MODELS, ids=MODEL_IDS)
def test_outputs_match_the_tflite_interpreter(converted, model, astronaut_bgr):
    interpreter = load_tflite_interpreter(source_path(model))
    if interpreter is None:
        pytest.skip("no TFLite interpreter installed (tflite-runtime / ai-edge-litert)")
    size = int(interpreter.get_input_details()[0]["shape"][1])
    session = _session(converted[model.onnx_name])
    noise = np.random.default_rng(0).uniform(*model.input_range, (1, 3, size, size)).astype(np.float32)
    for nchw in (_model_input(model, astronaut_bgr, size), noise):
        expected = run_tflite(interpreter, nchw.transpose(0, 2, 3, 1))
        got = session.run(None, {"input": nchw})
        for diff, reference in zip(max_abs_differences(got, expected), expected):
            assert diff <= 1e-4 * max(1.0, float(np.abs(reference).max()))


@pytest.mark.parametrize("model", ALL_MODELS, ids=MODEL_IDS)
def test_cpu_friendly_rewrites_equal_the_literal_prelu_and_pad(converted, model, astronaut_bgr, tmp_path):
    literal = convert_tflite_file(source_path(model), outputs=model.outputs, dynamic_batch=model.dynamic_batch,
                                  cpu_friendly=False)
    literal_path = str(tmp_path / "literal.onnx")
    onnx.save(literal, literal_path)
    friendly = onnx.load(converted[model.onnx_name])
    constants = {t.name: numpy_helper.to_array(t) for t in friendly.graph.initializer}
    assert "PRelu" not in {node.op_type for node in friendly.graph.node}
    channel_pads = [constants[node.input[1]][[1, 5]] for node in friendly.graph.node if node.op_type == "Pad"]
    assert not np.any(channel_pads)  # spatial pads may stay (onnxruntime folds them into the next Conv)
    size = 192 if model is LANDMARK_MODEL else _session(literal_path).get_inputs()[0].shape[2]
    image = face_crop(astronaut_bgr) if model is LANDMARK_MODEL else astronaut_bgr
    noise = np.random.default_rng(1).uniform(*model.input_range, (1, 3, size, size)).astype(np.float32)
    for nchw in (_model_input(model, image, size), noise):
        expected = _session(literal_path).run(None, {"input": nchw})
        got = _session(converted[model.onnx_name]).run(None, {"input": nchw})
        for diff, reference in zip(max_abs_differences(got, expected), expected):
            assert diff <= 1e-5 * max(1.0, float(np.abs(reference).max()))


@pytest.mark.parametrize("model", ALL_MODELS, ids=MODEL_IDS)
def test_committed_models_are_what_the_converter_produces(converted, model):
    committed = model_path(model)
    if not os.path.isfile(committed):
        pytest.skip(f"{committed} not present (ensure_models builds it on first use)")
    assert onnx.load(committed).graph == onnx.load(converted[model.onnx_name]).graph


def test_ensure_models_rebuilds_missing_and_corrupted_files_only(tmp_path):
    folder = str(tmp_path)
    paths = ensure_models(folder, detector="short")
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in paths.values())
    assert all(is_valid_model(p, m) for p, m in zip(paths.values(), (DETECTOR_MODELS["short"], LANDMARK_MODEL)))

    detector, landmark = paths["detector"], paths["landmark"]
    os.utime(landmark, (1, 1))  # a valid file must be left alone: its mtime stays
    with open(detector, "r+b") as f:
        f.truncate(os.path.getsize(detector) // 2)
    assert not is_valid_model(detector, DETECTOR_MODELS["short"])
    ensure_models(folder, detector="short")
    assert is_valid_model(detector, DETECTOR_MODELS["short"])
    assert os.path.getmtime(landmark) == 1
    assert not [name for name in os.listdir(folder) if ".tmp" in name]  # atomic writes leave nothing behind


def test_model_with_wrong_output_names_is_not_valid(tmp_path):
    path = str(tmp_path / "renamed.onnx")
    model = LANDMARK_MODEL
    onnx.save(convert_tflite_file(source_path(model)), path)  # tflite's own output names (conv2d_21, ...)
    assert not is_valid_model(path, model)


def test_model_dir_defaults_next_to_the_library():
    assert os.path.dirname(model_path(LANDMARK_MODEL)) == MODEL_DIR
    assert os.path.basename(MODEL_DIR) == "facemesh"


@given(size=st.integers(1, 300), kernel=st.integers(1, 7), stride=st.integers(1, 4), dilation=st.integers(1, 3))
def test_same_padding_gives_tensorflow_output_size_with_the_extra_pixel_after(size, kernel, stride, dilation):
    before, after = _same_padding(size, kernel, stride, dilation)
    effective = (kernel - 1) * dilation + 1
    assert after - before in (0, 1)
    if before + after:
        assert (size + before + after - effective) // stride + 1 == math.ceil(size / stride)
