"""Install a trained ONNX classifier as one of the plugin's own models: copy it beside the plugin's manifest and
write its manifest entry (file, sha256, crop, which output serves which task, source)."""
import json
import os
import shutil

import onnx

from face_recognition.ax_facial_features.classifiers import DEFAULT_MANIFEST
from face_recognition.ax_facial_features.constants import (
    EYE_BAND, EYELASHES, EYELIDS, FACE, FACIAL_HAIR, PER_EYE_CROP, PER_EYE_EYELID, UNCLEAR_OUTPUTS)
from face_recognition.ax_facial_features.crops import crop_size
from util.errors import ModelError
from util.file_utils import atomic_output, sha256_of_file, write_json_atomic

# What each task group's network takes and gives (scripts/training/export.py names the outputs after the tasks).
GROUP_CONTRACT = {
    "eyes": {"crop": EYE_BAND, "outputs": {EYELIDS: "softmax", EYELASHES: "softmax"}},
    "facial_hair": {"crop": FACE, "outputs": {FACIAL_HAIR: "none"}},  # sigmoid inside the model
    "per_eye": {"crop": PER_EYE_CROP, "input_size": crop_size(PER_EYE_CROP), "outputs": {PER_EYE_EYELID: "softmax"}},
}


def install_model(onnx_path, group, file_name, source, manifest_path=DEFAULT_MANIFEST):
    """Copy ``onnx_path`` to ``<manifest folder>/<file_name>`` and replace the own-set entry serving ``group``
    (and drop that group's unclear gates, fitted on the replaced model). Unclear outputs (``<task>_unclear``,
    sigmoid inside) are listed when the model has them."""
    contract = dict(GROUP_CONTRACT[group])
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model)
    outputs = [o.name for o in model.graph.output]
    contract["outputs"] = {**contract["outputs"], **{UNCLEAR_OUTPUTS[task]: "none" for task in contract["outputs"]
                                                     if UNCLEAR_OUTPUTS[task] in outputs}}
    missing = [task for task in contract["outputs"] if task not in outputs]
    if missing:
        raise ModelError(f"{onnx_path}: has no output named {missing} (outputs: {outputs})")
    target = os.path.join(os.path.dirname(os.path.abspath(manifest_path)), file_name)
    with atomic_output(target) as tmp_path:
        shutil.copyfile(onnx_path, tmp_path)
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    entry = {"file": file_name, "sha256": sha256_of_file(target), "crop": contract["crop"],
             **({"input_size": contract["input_size"]} if "input_size" in contract else {}),
             "outputs": {task: {"output": task, "activation": activation}
                         for task, activation in contract["outputs"].items()},
             "source": source}
    own = manifest["sets"].setdefault("own", {"models": []})
    own["models"] = [m for m in own["models"]
                     if not set(m["outputs"]) & set(contract["outputs"]) and m["file"] != file_name] + [entry]
    # A gate was fitted on the replaced model's unclear output: drop it (fit new ones with the `gates` command).
    for task in GROUP_CONTRACT[group]["outputs"]:
        own.get("gates", {}).pop(task, None)
    write_json_atomic(manifest_path, manifest)
    return entry


def install_gates(gates, manifest_path=DEFAULT_MANIFEST):
    """Write ``{task: gate dict}`` (face_recognition/ax_facial_features/unclear.py) into the own set's "gates"."""
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    own = manifest["sets"].setdefault("own", {"models": []})
    own["gates"] = {**own.get("gates", {}), **gates}
    write_json_atomic(manifest_path, manifest)
