"""One inference facade over the ailia SDK and onnxruntime.

``create_backend`` returns an object whose ``predict`` runs either an ``ailia.Net`` or an onnxruntime session, so
the model code never knows which. ailia is tried first unless ``force_onnx``; when ailia cannot create a network
(not installed, or no licence: offline, ailia prints its own licence message and then fails inside its licence
download with a TypeError) the facade falls back to onnxruntime with one warning line per process.
"""
import contextlib
import io
import logging
import os
import sys

import numpy as np

from util.errors import ModelError

logger = logging.getLogger(__name__)

_ailia_failure = None  # why ailia cannot be used in this process (cached: each failed attempt is slow and noisy)
_fallback_warned = False


@contextlib.contextmanager
def _silenced_output():
    """Swallow what ailia prints (Python and C level) so that the console keeps one line of ours."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def ailia_unavailable_reason():
    """None when ailia can create a network here, else a one-line reason."""
    global _ailia_failure
    if _ailia_failure is None:
        _ailia_failure = _probe_ailia()
    return _ailia_failure or None


def _probe_ailia():
    try:
        with _silenced_output():
            import ailia  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return f"ailia SDK not importable ({type(e).__name__}: {e})"
    return ""  # importable; whether a network can be created is learnt on first use


def _mark_ailia_failed(reason):
    global _ailia_failure
    _ailia_failure = reason


def _warn_fallback(reason):
    global _fallback_warned
    if not _fallback_warned:
        _fallback_warned = True
        logger.warning("ailia cannot run here (%s); using onnxruntime", reason)


class Backend:
    """Common surface: name, input_names, output_names, predict(inputs) -> list of arrays."""

    name = "base"
    input_names = ()
    output_names = ()

    def _as_list(self, inputs):
        if isinstance(inputs, dict):
            return [np.ascontiguousarray(inputs[name], dtype=np.float32) for name in self.input_names]
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if len(inputs) != len(self.input_names):
            raise ValueError(f"model takes {len(self.input_names)} inputs, got {len(inputs)}")
        return [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]

    def predict(self, inputs):
        raise NotImplementedError


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_path, num_threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: keep the console clean
        # The pipeline runs several sessions one after another (detector, mesh, classifiers): a session's threads
        # spinning after its run steal the cores from the next one (measured on 2 cores: 4 faces 65 -> 43 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"{model_path}: onnxruntime cannot load this model ({str(e).splitlines()[0]}); "
                             "delete it so that it is fetched or rebuilt again") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def predict(self, inputs):
        feed = dict(zip(self.input_names, self._as_list(inputs)))
        return self.session.run(self.output_names, feed)


class AiliaBackend(Backend):
    name = "ailia"

    def __init__(self, model_path, env_id=-1, prototxt_path=None):
        import ailia

        with _silenced_output():
            self.net = ailia.Net(prototxt_path, model_path, env_id=env_id)
        self.input_names = [self.net.get_blob_name(i) for i in self.net.get_input_blob_list()]
        self.output_names = [self.net.get_blob_name(i) for i in self.net.get_output_blob_list()]

    def predict(self, inputs):
        arrays = self._as_list(inputs)
        if len(arrays) == 1:
            outputs = self.net.predict(arrays[0])
        else:
            outputs = self.net.predict(dict(zip(self.input_names, arrays)))
        if isinstance(outputs, np.ndarray):
            outputs = [outputs]
        return [np.asarray(o) for o in outputs]


def try_create_ailia(model_path, env_id=-1, prototxt_path=None):
    """An AiliaBackend, or None (with the reason remembered) when ailia cannot create this network."""
    reason = ailia_unavailable_reason()
    if reason:
        return None
    try:
        return AiliaBackend(model_path, env_id=env_id, prototxt_path=prototxt_path)
    except BaseException as e:  # ailia raises TypeError offline without a licence, AiliaError otherwise
        if isinstance(e, KeyboardInterrupt):
            raise
        logger.debug("ailia.Net failed: %s: %s", type(e).__name__, e)
        _mark_ailia_failed("the ailia SDK could not create a network (no valid licence, or it cannot be verified "
                           f"offline; {type(e).__name__})")
        return None


def create_backend(model_path, *, env_id=-1, force_onnx=False, prototxt_path=None, num_threads=None):
    """Run ``model_path`` with ailia when it works, else onnxruntime (``force_onnx`` skips ailia)."""
    if not os.path.isfile(model_path):
        raise ModelError(f"model file not found: {model_path}")
    if not force_onnx:
        backend = try_create_ailia(model_path, env_id=env_id, prototxt_path=prototxt_path)
        if backend is not None:
            return backend
        _warn_fallback(ailia_unavailable_reason())
    return OnnxRuntimeBackend(model_path, num_threads=num_threads)


def describe_ailia_environments():
    """Lines for --env_list: ailia's environments, or why ailia is unavailable."""
    reason = ailia_unavailable_reason()
    if reason:
        return [f"ailia is unavailable: {reason}"]
    import ailia

    with _silenced_output():
        environments = ailia.get_environment_list()
    lines = [f"env_id {env.id}: {env.type} {env.name}" for env in environments]
    lines.append("note: ailia networks also need a licence; without one, onnxruntime is used")
    return lines
