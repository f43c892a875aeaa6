"""The classifier models: which files serve which task, loading them, and running them on crops.

A manifest (``manifest.json`` beside this file) lists two model sets:
- ``official``: ax Inc.'s obfuscated ONNX files, one per task, runnable by the ailia SDK only (licence needed);
- ``own``: the project's plain-ONNX models, trained by scripts/training; one file may serve several tasks
  (eyelids and eyelashes share the eye band, so one network with two heads serves both).
Each model entry names its file, sha256, the crop it takes (``face``, ``eye_band``, or ``eye``: both eyes of every
face in one batch, see PER_EYE_ORDER), optionally its ``input_size`` and, per output (a task, ``per_eye_eyelid``
or a task's ``<task>_unclear`` probability), which model output and activation to use. A set may also carry
``gates``: per task, the fitted unclear gate (unclear.Gate) and its cross-validation figures (``cv``, passed on).
The official set is tried only when ailia works; otherwise, or when its files cannot be had, the own set is used.
"""
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, MODEL_OUTPUTS, PER_EYE_EYELID, TASKS, UNCLEAR_OUTPUTS)
from face_recognition.ax_facial_features.crops import crop_size
from face_recognition.ax_facial_features.unclear import MODEL_LOGIT, Gate
from util.backend import ailia_unavailable_reason, create_backend
from util.errors import ModelError
from util.math_utils import sigmoid, softmax
from util.model_utils import check_and_download_models, model_path, verify_file

logger = logging.getLogger(__name__)

DEFAULT_MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifest.json")
ACTIVATIONS = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: np.asarray(x, dtype=np.float64)}


@dataclass
class TaskOutput:
    """Where one output's scores come from in a model (``task``: one of MODEL_OUTPUTS): output name (or index)
    and the activation to apply."""
    task: str
    output: object
    activation: str


@dataclass
class ModelSpec:
    file: str
    crop: str
    outputs: list
    input_size: int = None
    sha256: str = None
    prototxt: str = None
    remote_path: str = None
    source: str = ""


@dataclass
class LoadedModel:
    spec: ModelSpec
    path: str
    backend: object
    output_index: dict = field(default_factory=dict)  # task -> index into backend outputs

    def run(self, batch):
        """Scores per task served by this model, each (N, classes) float64 probabilities."""
        outputs = self.backend.predict(batch)
        return {out.task: ACTIVATIONS[out.activation](outputs[self.output_index[out.task]])
                for out in self.spec.outputs}


def load_manifest(path=DEFAULT_MANIFEST):
    """{set name: [ModelSpec]} from a manifest file; ModelError when it is unreadable."""
    return _parse_manifest(path, lambda model_set: [_parse_spec(entry, model_set.get("remote_path"))
                                                    for entry in model_set["models"]])


def load_gates(path=DEFAULT_MANIFEST):
    """{set name: {task: (Gate, cv figures or None)}} from a manifest file; ModelError when malformed."""
    return _parse_manifest(path, lambda model_set: {task: _parse_gate(task, entry)
                                                    for task, entry in model_set.get("gates", {}).items()})


def _parse_manifest(path, parse_set):
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        return {name: parse_set(model_set) for name, model_set in manifest["sets"].items()}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: not a valid model manifest ({type(e).__name__}: {e})") from None


def _parse_gate(task, entry):
    if task not in UNCLEAR_OUTPUTS:
        raise ValueError(f"gate for unknown task '{task}' (gated tasks: {', '.join(UNCLEAR_OUTPUTS)})")
    try:
        return Gate.from_dict(entry), entry.get("cv")
    except ValueError as e:
        raise ValueError(f"gate of {task}: {e}") from None


def _parse_spec(entry, remote_path):
    outputs = [TaskOutput(task, o["output"], o.get("activation", "none")) for task, o in entry["outputs"].items()]
    for out in outputs:
        if out.task not in MODEL_OUTPUTS or out.activation not in ACTIVATIONS:
            raise ValueError(f"unknown output or activation in {entry['file']}: {out.task}/{out.activation}")
    expected = crop_size(entry["crop"])
    input_size = int(entry.get("input_size", expected))
    if input_size != expected:
        raise ValueError(f"{entry['file']}: input_size {input_size} does not match its crop '{entry['crop']}' "
                         f"({expected} px)")
    return ModelSpec(file=entry["file"], crop=entry["crop"], outputs=outputs, input_size=input_size,
                     sha256=entry.get("sha256"), prototxt=entry.get("prototxt"), remote_path=remote_path,
                     source=entry.get("source", ""))


def requested_outputs(tasks, per_eye=False):
    """(required outputs, optional outputs): the tasks (and per-eye eyelids) must be served; their unclear
    probabilities come along when the serving model has them."""
    required = tuple(tasks) + ((PER_EYE_EYELID,) if per_eye else ())
    return required, tuple(UNCLEAR_OUTPUTS[task] for task in required)


def _specs_for_tasks(specs, tasks):
    """The models needed for ``tasks``; ModelError if a task is served by none."""
    chosen = [s for s in specs if any(o.task in tasks for o in s.outputs)]
    served = {o.task for s in chosen for o in s.outputs}
    missing = [t for t in tasks if t not in served]
    if missing:
        hint = " (per-eye eyelids need a model with crop 'eye')" if PER_EYE_EYELID in missing else ""
        raise ModelError(f"no classifier model is installed for: {', '.join(missing)}{hint}. Put ONNX classifiers "
                         "with their manifest entries in place (README, 'Models'), or train them with scripts/training")
    return chosen


class Classifiers:
    """Loads the models that serve the requested tasks and runs them on preprocessed crop batches."""

    def __init__(self, tasks=TASKS, *, per_eye=False, model_dir=None, manifest_path=None, env_id=-1,
                 force_onnx=False):
        self.tasks = tuple(tasks)
        self.required, optional = requested_outputs(self.tasks, per_eye)
        manifest_path = manifest_path or DEFAULT_MANIFEST
        # Model files sit next to their manifest unless --model_dir says otherwise.
        self.model_dir = model_dir or os.path.dirname(os.path.abspath(manifest_path))
        sets = load_manifest(manifest_path)
        gates = load_gates(manifest_path)
        self.models, used_set = None, "official"
        if not force_onnx and "official" in sets and ailia_unavailable_reason() is None:
            self.models = self._try_official(sets["official"], env_id)
        if self.models is None:
            if "own" not in sets:
                raise ModelError(f"{manifest_path}: no 'own' model set to run without the ailia SDK")
            self.models, used_set = [self._load(spec, env_id, force_onnx=True) for spec in
                                     _specs_for_tasks(sets["own"], self.required)], "own"
        served = {out.task for model in self.models for out in model.spec.outputs}
        self.outputs = tuple(o for o in self.required + optional if o in served)
        self.gates, self.gate_cv = self._gates_in_use(gates[used_set], manifest_path)

    def _gates_in_use(self, gates, manifest_path):
        """{task: Gate} and {task: cv figures} of the requested tasks; a gate reading the model's unclear output
        needs a model that has it."""
        chosen = {task: entry for task, entry in gates.items() if task in self.required}
        for task, (gate, _) in chosen.items():
            if MODEL_LOGIT in gate.features and UNCLEAR_OUTPUTS[task] not in self.outputs:
                raise ModelError(f"{manifest_path}: the gate of {task} reads '{UNCLEAR_OUTPUTS[task]}', "
                                 "which no loaded model serves")
        return ({task: gate for task, (gate, _) in chosen.items()},
                {task: cv for task, (_, cv) in chosen.items() if cv is not None})

    def _try_official(self, specs, env_id):
        try:
            models = []
            for spec in _specs_for_tasks(specs, self.required):
                weight = model_path(spec.file, __file__, self.model_dir)
                proto = model_path(spec.prototxt, __file__, self.model_dir) if spec.prototxt else None
                check_and_download_models(weight, proto, spec.remote_path, spec.sha256)
                model = self._load(spec, env_id, force_onnx=False, prototxt_path=proto)
                if model.backend.name != "ailia":
                    return None  # obfuscated files run on ailia only
                models.append(model)
            return models
        except ModelError as e:
            logger.warning("official ax models unavailable (%s); using the project's own models", e)
            return None

    def _load(self, spec, env_id, force_onnx, prototxt_path=None):
        path = model_path(spec.file, __file__, self.model_dir)
        if not os.path.isfile(path):
            raise ModelError(f"classifier model not found: {path}. Put the model files listed in "
                             f"the manifest there (see README, 'Models'), or train them with scripts/training")
        verify_file(path, spec.sha256)
        backend = create_backend(path, env_id=env_id, force_onnx=force_onnx, prototxt_path=prototxt_path)
        index = {}
        for out in spec.outputs:
            if isinstance(out.output, int):
                index[out.task] = out.output
            elif out.output in backend.output_names:
                index[out.task] = backend.output_names.index(out.output)
            else:
                raise ModelError(f"{path}: has no output '{out.output}' (outputs: {backend.output_names})")
        for out in spec.outputs:
            classes = len(CLASS_NAMES[out.task])
            shape = _output_shape(backend, index[out.task])
            if shape is not None and shape[-1] not in (classes, None) and isinstance(shape[-1], int):
                raise ModelError(f"{path}: output for {out.task} has {shape[-1]} values, expected {classes}")
        return LoadedModel(spec=spec, path=path, backend=backend, output_index=index)

    @property
    def crop_kinds(self):
        return sorted({m.spec.crop for m in self.models})

    def classify(self, batches, timer=None):
        """``batches``: crop name -> (N, 3, S, S) float32 (per-eye: (2N, ...)). Returns output -> (rows, classes)
        probabilities for every served requested output (``self.outputs``: tasks, per-eye eyelids, unclear).
        ``timer`` (util.timing.StageTimer), when given, gets one "classify <file>" lap per model."""
        scores = {}
        for model in self.models:
            for task, values in model.run(batches[model.spec.crop]).items():
                if task in self.outputs:
                    scores[task] = values
            if timer:
                timer.lap(f"classify {model.spec.file}")
        return scores

    def model_info(self):
        """task (and per-eye eyelids) -> {"file", "sha256", "backend"} of the model that serves it, plus "gate_cv"
        where the manifest gives its gate's cross-validation figures (for reports)."""
        info = {}
        for model in self.models:
            for out in model.spec.outputs:
                if out.task in self.required:
                    info[out.task] = {"file": model.spec.file, "sha256": model.spec.sha256,
                                      "backend": model.backend.name}
        for task, cv in self.gate_cv.items():
            info[task]["gate_cv"] = cv
        return info


def _output_shape(backend, index):
    session = getattr(backend, "session", None)
    if session is None:
        return None
    return session.get_outputs()[index].shape
