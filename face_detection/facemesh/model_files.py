"""The converted mediapipe models: where they live, how they are made, and making sure they are usable.

The ONNX files sit next to this module (or in ``model_dir``). They are produced by ``util.tflite_to_onnx`` from the
.tflite files inside the installed ``mediapipe`` package, so a missing or corrupted file is simply rebuilt
(``ensure_models``), and ``scripts/convert_mediapipe_models.py`` reproduces them all.

Input normalisation is NOT folded into the graphs: the detectors expect RGB in [-1, 1], the mesh RGB in [0, 1].
"""
import logging
import os
from dataclasses import dataclass

import onnx

from util.errors import InputError, ModelError, OutputError
from util.file_utils import atomic_output, output_error
from util.tflite_to_onnx import OutputSpec, convert_tflite_file

logger = logging.getLogger(__name__)

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class MediapipeModel:
    """One mediapipe .tflite model and the ONNX file converted from it."""

    onnx_name: str
    tflite_path: str  # relative to site-packages/mediapipe/modules
    outputs: tuple
    dynamic_batch: bool
    input_range: tuple  # (min, max) of the RGB input the model expects
    input_size: int  # the input is (N, 3, input_size, input_size)

    @property
    def output_names(self):
        return [spec.name for spec in self.outputs]

    def describe(self):
        low, high = self.input_range
        return (f"Converted from mediapipe/modules/{self.tflite_path} by util/tflite_to_onnx.py. "
                f"Input 'input': NCHW float32 RGB in [{low:g}, {high:g}] (normalisation not folded in). "
                f"Outputs: {', '.join(self.output_names)}.")


_DETECTOR_OUTPUTS = (OutputSpec("regressors"), OutputSpec("classificators"))

DETECTOR_MODELS = {
    "short": MediapipeModel("face_detection_short_range.onnx", "face_detection/face_detection_short_range.tflite",
                            _DETECTOR_OUTPUTS, dynamic_batch=False, input_range=(-1.0, 1.0), input_size=128),
    "full": MediapipeModel("face_detection_full_range.onnx", "face_detection/face_detection_full_range_sparse.tflite",
                           _DETECTOR_OUTPUTS, dynamic_batch=False, input_range=(-1.0, 1.0), input_size=192),
}
LANDMARK_MODEL = MediapipeModel(
    "face_landmark.onnx", "face_landmark/face_landmark.tflite",
    (OutputSpec("landmarks", flatten=True), OutputSpec("presence", flatten=True)),
    dynamic_batch=True, input_range=(0.0, 1.0), input_size=192)

ALL_MODELS = (DETECTOR_MODELS["short"], DETECTOR_MODELS["full"], LANDMARK_MODEL)


def mediapipe_modules_dir():
    try:
        import mediapipe
    except ImportError:
        raise ModelError("the mediapipe package is needed to build the face models (pip install mediapipe==0.10.21)") \
            from None
    return os.path.join(os.path.dirname(os.path.abspath(mediapipe.__file__)), "modules")


def source_path(model):
    """The .tflite file inside the installed mediapipe package."""
    path = os.path.join(mediapipe_modules_dir(), *model.tflite_path.split("/"))
    if not os.path.isfile(path):
        raise ModelError(f"{path}: missing from the installed mediapipe package")
    return path


def model_path(model, model_dir=None):
    return os.path.join(model_dir or MODEL_DIR, model.onnx_name)


def convert_model(model, model_dir=None):
    """Convert ``model`` from mediapipe into ``model_dir``; written atomically. Returns the ONNX path."""
    proto = convert_tflite_file(source_path(model), outputs=model.outputs, dynamic_batch=model.dynamic_batch,
                                doc_string=model.describe(),
                                metadata={"input_range": f"{model.input_range[0]:g},{model.input_range[1]:g}"})
    path = model_path(model, model_dir)
    try:
        # `<stem>.tmp.onnx`: never a half-written model under the final name
        with output_error(path), atomic_output(path) as tmp_path:
            onnx.save(proto, tmp_path)
    except OutputError as e:
        raise ModelError(f"{e}; choose a writable folder with --model_dir, or run "
                         "scripts/convert_mediapipe_models.py where it can write") from None
    return path


def _input_dims(proto):
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def is_valid_model(path, model):
    """True when ``path`` loads, passes the ONNX checker and has the expected input/output names and input size
    (a file of the other detector variant is not valid)."""
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
    except Exception:  # missing, truncated, not protobuf, invalid graph: all mean "rebuild"
        return False
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    size = model.input_size
    return inputs == ["input"] and outputs == model.output_names and _input_dims(proto)[1:] == [3, size, size]


def ensure_model(model, model_dir=None):
    path = model_path(model, model_dir)
    if not is_valid_model(path, model):
        if os.path.exists(path):
            logger.warning("%s is not a valid %s model (truncated or corrupted?); rebuilding it from mediapipe",
                           path, model.onnx_name)
        else:
            logger.info("converting %s from the installed mediapipe package", model.onnx_name)
        convert_model(model, model_dir)
        if not is_valid_model(path, model):
            raise ModelError(f"{path}: the converted model is invalid; reinstall mediapipe==0.10.21 and run "
                             "scripts/convert_mediapipe_models.py")
    return path


def ensure_models(model_dir=None, detector="short"):
    """Paths {"detector": ..., "landmark": ...}, (re)converting any file that is missing or invalid."""
    if detector not in DETECTOR_MODELS:
        raise InputError(f"unknown detector '{detector}' (choose from {', '.join(DETECTOR_MODELS)})")
    return {"detector": ensure_model(DETECTOR_MODELS[detector], model_dir),
            "landmark": ensure_model(LANDMARK_MODEL, model_dir)}
