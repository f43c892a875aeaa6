"""Metrics of the original ax Inc. work, on numpy arrays, plus 95 % interval helpers.

- eyelids / eyelashes (single-label, softmax): cross entropy, accuracy, balanced accuracy (mean per-class recall
  over the classes present in the truth).
- facial hair (multi-label, sigmoid): binary cross entropy, Hamming loss (fraction of wrong label decisions),
  Hamming score (mean over samples of |true AND predicted| / |true OR predicted|, computed only on samples with at
  least one true or predicted label: all-negative agreements are excluded, so the score is not inflated by
  clean-shaven faces), per-label precision and recall.
- per-eye eyelids: as eyelids. "Unclear" outputs (one sigmoid): binary cross entropy, ROC AUC, and at 0.5
  accuracy, balanced accuracy, precision and recall of "unclear".

Undefined values (no positives, empty set) are NaN in arrays and ``None`` in JSON (see ``json_ready``).
"""
import math

import numpy as np

from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, EYELASHES, EYELIDS, FACIAL_HAIR, MULTI_LABEL_TASKS, PER_EYE_EYELID, UNCLEAR_OUTPUTS)
from util.math_utils import sigmoid, softmax

_EPS = 1e-7


def cross_entropy(logits, labels):
    """Mean softmax cross entropy of integer ``labels`` (N,) under ``logits`` (N, C)."""
    probabilities = softmax(logits, axis=1)
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


def accuracy(labels, predicted):
    return float(np.mean(np.asarray(labels) == np.asarray(predicted)))


def per_class_recall(labels, predicted, num_classes):
    """Recall of each class (NaN for a class absent from ``labels``)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    recalls = np.full(num_classes, np.nan)
    for c in range(num_classes):
        members = labels == c
        if members.any():
            recalls[c] = np.mean(predicted[members] == c)
    return recalls


def balanced_accuracy(labels, predicted, num_classes):
    return float(np.nanmean(per_class_recall(labels, predicted, num_classes)))


def binary_cross_entropy(probabilities, targets):
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    t = np.asarray(targets, dtype=np.float64)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def hamming_loss(targets, decisions):
    return float(np.mean(np.asarray(targets, bool) != np.asarray(decisions, bool)))


def hamming_score(targets, decisions):
    """Mean |Y and Z| / |Y or Z| over samples where Y or Z is not empty; NaN when every sample is all-negative."""
    y, z = np.asarray(targets, bool), np.asarray(decisions, bool)
    union = (y | z).sum(axis=1)
    keep = union > 0
    if not keep.any():
        return float("nan")
    return float(np.mean((y & z).sum(axis=1)[keep] / union[keep]))


def precision_recall(targets, decisions):
    """Per-label (precision, recall) arrays; NaN where undefined."""
    y, z = np.asarray(targets, bool), np.asarray(decisions, bool)
    true_positive = (y & z).sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(z.sum(axis=0) > 0, true_positive / z.sum(axis=0), np.nan)
        recall = np.where(y.sum(axis=0) > 0, true_positive / y.sum(axis=0), np.nan)
    return precision, recall


def single_label_metrics(logits, labels):
    """Cross entropy, accuracy and balanced accuracy from raw logits (N, C) and integer labels (N,)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    predicted = logits.argmax(axis=1)
    return {"cross_entropy": cross_entropy(logits, labels),
            "accuracy": accuracy(labels, predicted),
            "balanced_accuracy": balanced_accuracy(labels, predicted, logits.shape[1]),
            "count": int(len(labels))}


def multi_label_metrics(logits, targets, threshold=0.5, label_names=CLASS_NAMES[FACIAL_HAIR]):
    """BCE, Hamming loss / score and per-label precision / recall from raw logits (N, L) and 0/1 targets."""
    probabilities = sigmoid(logits)
    decisions = probabilities >= threshold
    precision, recall = precision_recall(targets, decisions)
    metrics = {"bce": binary_cross_entropy(probabilities, targets),
               "hamming_loss": hamming_loss(targets, decisions),
               "hamming_score": hamming_score(targets, decisions),
               "count": int(len(targets))}
    for name, p, r in zip(label_names, precision, recall):
        metrics[f"precision_{name}"] = float(p)
        metrics[f"recall_{name}"] = float(r)
    return metrics


def roc_auc(scores, positives):
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metrics(logits, targets):
    """An "unclear" output: BCE, ROC AUC, and at 0.5 accuracy, balanced accuracy, precision and recall."""
    probabilities = sigmoid(np.asarray(logits, dtype=np.float64).reshape(-1))
    truth = np.asarray(targets).reshape(-1) > 0.5
    decisions = probabilities >= 0.5
    precision, recall = precision_recall(truth[:, None], decisions[:, None])
    return {"bce": binary_cross_entropy(probabilities, truth), "auc": roc_auc(probabilities, truth),
            "accuracy": accuracy(truth, decisions),
            "balanced_accuracy": balanced_accuracy(truth.astype(int), decisions.astype(int), 2),
            "precision": float(precision[0]), "recall": float(recall[0]), "count": int(len(truth))}


def task_metrics(task, logits, targets):
    """Metrics of one task: ``targets`` are integer labels (single-label) or 0/1 rows (multi-label, unclear)."""
    if task in UNCLEAR_OUTPUTS.values():
        return binary_metrics(logits, targets)
    if task in MULTI_LABEL_TASKS:
        return multi_label_metrics(logits, targets, label_names=CLASS_NAMES[task])
    return single_label_metrics(logits, targets)


# Headline metric of each task, used for model selection and reports (all: higher is better).
HEADLINE = {EYELIDS: "balanced_accuracy", EYELASHES: "balanced_accuracy", FACIAL_HAIR: "hamming_score",
            PER_EYE_EYELID: "balanced_accuracy", **{output: "auc" for output in UNCLEAR_OUTPUTS.values()}}


# ---------------------------------------------------------------------------------------------------------------
# 95 % intervals


def bootstrap_interval(metric, arrays, n_resamples=1000, level=0.95, seed=0, clusters=None):
    """Percentile bootstrap interval of ``metric(*arrays)`` resampling rows (samples) with replacement, or whole
    ``clusters`` (one id per row, e.g. the face of each eye: two eyes of one face are not independent).
    Returns (estimate, low, high); resamples where the metric is NaN are dropped."""
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    if clusters is not None:
        _, cluster_index = np.unique(np.asarray(clusters), return_inverse=True)
        members = [np.flatnonzero(cluster_index == c) for c in range(cluster_index.max() + 1)]
    values = []
    for _ in range(n_resamples):
        if clusters is None:
            rows = rng.integers(0, n, n)
        else:
            rows = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        values.append(metric(*(a[rows] for a in arrays)))
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
    return float(metric(*arrays)), float(low), float(high)


# Metrics that are not confined to [0, 1] (intervals of the others are clipped to it).
UNBOUNDED = ("cross_entropy", "bce")


def fold_interval(scores, n_splits, bounds=(0.0, 1.0)):
    """``cv_interval`` of one score per fold of a k-fold run, as a JSON-ready dict that keeps the fold scores."""
    mean, low, high, std = cv_interval(scores, 1 / n_splits, bounds=bounds)
    return {"mean": mean, "low": low, "high": high, "std": std, "per_fold": list(map(float, scores))}


def cv_interval(fold_scores, test_fraction, level=0.95, bounds=(-math.inf, math.inf)):
    """Mean and interval of repeated k-fold scores with the Nadeau-Bengio corrected variance
    (1/J + n_test/n_train) * s^2: folds share training data, so the naive s^2/J interval is too narrow.
    The interval is clipped to ``bounds``. Returns (mean, low, high, std)."""
    from scipy import stats

    scores = np.asarray([s for s in fold_scores if s is not None and np.isfinite(s)], dtype=np.float64)
    j = len(scores)
    if j == 0:
        return (math.nan,) * 4
    mean, std = float(scores.mean()), float(scores.std(ddof=1)) if j > 1 else 0.0
    corrected = math.sqrt((1 / j + test_fraction / (1 - test_fraction)) * std ** 2)
    half = float(stats.t.ppf(0.5 + level / 2, max(j - 1, 1))) * corrected
    return mean, max(mean - half, bounds[0]), min(mean + half, bounds[1]), std


def json_ready(value):
    """Replace NaN / inf with None recursively (JSON has no NaN), numpy scalars with Python ones."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
