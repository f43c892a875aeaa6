#!/usr/bin/env python3
"""Convert mediapipe's face detection and face mesh .tflite models (from the installed package) to ONNX.

    python3 scripts/convert_mediapipe_models.py            # writes face_detection/facemesh/*.onnx
    python3 scripts/convert_mediapipe_models.py --check    # also compares each model with a TFLite interpreter

The check needs a TFLite interpreter package (tflite-runtime, ai-edge-litert or tensorflow); it feeds the
astronaut sample and seeded noise, compares every output, and verifies that a batch of 2 equals two single runs
for the batched mesh model. Exit code 0 when all is well, 1 when a check fails, 2 when nothing could run.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402

from face_detection.facemesh.model_files import ALL_MODELS, MODEL_DIR, convert_model, source_path  # noqa: E402
from util.errors import AxError  # noqa: E402
from util.image_utils import load_sample_portrait  # noqa: E402
from util.tflite_to_onnx import load_tflite_interpreter, max_abs_differences, run_tflite  # noqa: E402

RELATIVE_TOLERANCE = 1e-4  # of the largest output magnitude: float32 summation-order differences only


def sample_inputs(model, size, seed=0):
    """NHWC float32 batch-1 inputs in the model's range: the astronaut (a real face photo) and uniform noise."""
    low, high = model.input_range
    photo = cv2.resize(load_sample_portrait(), (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    photo = photo.astype(np.float32) / 255.0 * (high - low) + low
    noise = np.random.default_rng(seed).uniform(low, high, (size, size, 3)).astype(np.float32)
    return [photo[None], noise[None]]


def check_model(model, onnx_path):
    """Lines describing the comparison, and whether it passed."""
    interpreter = load_tflite_interpreter(source_path(model))
    if interpreter is None:
        raise AxError("--check needs a TFLite interpreter: pip install tflite-runtime (or ai-edge-litert)")
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    size = int(interpreter.get_input_details()[0]["shape"][1])
    inputs = sample_inputs(model, size)
    lines, passed = [], True
    for name, nhwc in zip(("astronaut", "noise"), inputs):
        expected = run_tflite(interpreter, nhwc)
        got = session.run(None, {"input": nhwc.transpose(0, 3, 1, 2)})
        for output_name, diff, reference in zip(model.output_names, max_abs_differences(got, expected), expected):
            ok = diff <= RELATIVE_TOLERANCE * max(1.0, float(np.abs(reference).max()))
            passed &= ok
            lines.append(f"  {name:9s} {output_name:15s} max|diff| {diff:.2e}  {'ok' if ok else 'FAIL'}")
    if model.dynamic_batch:
        batch = np.concatenate(inputs).transpose(0, 3, 1, 2)
        together = session.run(None, {"input": batch})
        alone = [session.run(None, {"input": batch[i:i + 1]}) for i in range(len(batch))]
        diff = max(float(np.abs(together[k][i] - alone[i][k][0]).max())
                   for i in range(len(batch)) for k in range(len(together)))
        ok = diff <= 1e-4
        passed &= ok
        lines.append(f"  batch of {len(batch)} vs single runs: max|diff| {diff:.2e}  {'ok' if ok else 'FAIL'}")
    return lines, passed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", default=MODEL_DIR, help="folder receiving the .onnx files")
    parser.add_argument("--check", action="store_true", help="compare each converted model with a TFLite interpreter")
    args = parser.parse_args(argv)
    all_passed = True
    try:
        for model in ALL_MODELS:
            path = convert_model(model, args.out_dir)
            print(f"{model.tflite_path} -> {path} ({os.path.getsize(path) / 1e6:.2f} MB)")
            if args.check:
                lines, passed = check_model(model, path)
                print("\n".join(lines))
                all_passed &= passed
    except AxError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
