"""The "unclear" gate: should a task's answer be trusted for this face, or reported as unclear?

Inputs per face (or per eye): the task model's own unclear probability (an extra sigmoid output trained on the
annotators' unclear labels) and signals the mesh gives for free (``gate_signals``): eye openness, the crop's width
in source pixels, head yaw and pitch. A ``Gate`` is a logistic regression on standardised signals, fitted by
scripts/training/gates.py with its threshold chosen by cross-validation against the annotators' unclear labels; its
parameters live in the manifest. The reason reported with an unclear status is the signal that pushed the score up
the most.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from face_recognition.ax_facial_features.constants import FACIAL_HAIR, STATUS_OK, STATUS_UNCLEAR

MODEL_LOGIT = "model_logit"
EYE_OPENNESS = "eye_openness"
LOG2_SOURCE_WIDTH = "log2_source_width"
ABS_YAW = "abs_yaw_degrees"
ABS_PITCH = "abs_pitch_degrees"
# Which way a signal may push towards "unclear" (+1: larger is less clear); the gate fit drops a signal whose
# weight comes out the other way (a spurious pattern of the training photos, e.g. their near-constant size).
EXPECTED_SIGN = {MODEL_LOGIT: +1, EYE_OPENNESS: -1, LOG2_SOURCE_WIDTH: -1, ABS_YAW: +1, ABS_PITCH: +1}
# Standardised signals are clipped to +-3: photos unlike the training ones (e.g. 4x larger faces) must not
# extrapolate a small training-set trend into a confident answer.
STANDARD_CLIP = 3.0
REASONS = {
    MODEL_LOGIT: "image unclear to the classifier (blur, occlusion, glasses, lighting)",
    EYE_OPENNESS: "eyes closed or nearly closed",
    LOG2_SOURCE_WIDTH: "too few pixels",
    ABS_YAW: "head turned sideways",
    ABS_PITCH: "head tilted up or down",
}


def default_features(task):
    """Signals a task's gate uses (eye openness says nothing about the lower face)."""
    if task == FACIAL_HAIR:
        return (MODEL_LOGIT, LOG2_SOURCE_WIDTH, ABS_YAW, ABS_PITCH)
    return (MODEL_LOGIT, EYE_OPENNESS, LOG2_SOURCE_WIDTH, ABS_YAW, ABS_PITCH)


def probability_logit(probability):
    p = min(max(float(probability), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def gate_signals(unclear_probability, geometry, source_width, eye=None):
    """Signals of one face (``eye=None``: openness of the less open eye) or of one eye ("left"/"right").
    ``geometry``: a geometry.FaceGeometry; ``source_width``: the task crop's width in source pixels."""
    openness = geometry.eye_openness[eye] if eye else min(geometry.eye_openness.values())
    return {MODEL_LOGIT: probability_logit(unclear_probability), EYE_OPENNESS: float(openness),
            LOG2_SOURCE_WIDTH: math.log2(max(float(source_width), 1.0)),
            ABS_YAW: abs(float(geometry.yaw_degrees)), ABS_PITCH: abs(float(geometry.pitch_degrees))}


@dataclass
class Gate:
    """score = sigmoid(bias + sum(weights * clip((signal - mean) / scale, +-3))); unclear when score >= threshold."""
    features: tuple
    mean: tuple
    scale: tuple
    weights: tuple
    bias: float
    threshold: float

    @classmethod
    def from_dict(cls, entry):
        gate = cls(features=tuple(entry["features"]), mean=tuple(entry["mean"]), scale=tuple(entry["scale"]),
                   weights=tuple(entry["weights"]), bias=float(entry["bias"]), threshold=float(entry["threshold"]))
        lengths = {len(gate.features), len(gate.mean), len(gate.scale), len(gate.weights)}
        unknown = [f for f in gate.features if f not in REASONS]
        if len(lengths) != 1 or unknown or not 0.0 < gate.threshold < 1.0:
            raise ValueError(f"malformed gate (unknown signals {unknown} or mismatched lengths or threshold)")
        return gate

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def contributions(self, signals):
        x = np.array([signals[name] for name in self.features], dtype=np.float64)
        standard = np.clip((x - np.asarray(self.mean)) / np.asarray(self.scale), -STANDARD_CLIP, STANDARD_CLIP)
        return np.asarray(self.weights) * standard

    def score(self, signals):
        """Probability that the annotators would have called this face (or eye) unclear."""
        z = self.bias + float(self.contributions(signals).sum())
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def decide(self, signals):
        """(status, reason or None, score)."""
        score = self.score(signals)
        if score < self.threshold:
            return STATUS_OK, None, score
        return STATUS_UNCLEAR, REASONS[self.features[int(np.argmax(self.contributions(signals)))]], score


def model_only_decision(unclear_probability):
    """Without a fitted gate: the model's own unclear output at 0.5."""
    if unclear_probability >= 0.5:
        return STATUS_UNCLEAR, REASONS[MODEL_LOGIT], float(unclear_probability)
    return STATUS_OK, None, float(unclear_probability)
