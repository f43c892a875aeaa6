"""Fitting the plugin's unclear gates (face_recognition/ax_facial_features/unclear.py) on cross-validation output.

For each task the gate is a logistic regression on the signals of ``unclear.gate_signals``: the task model's own
out-of-fold unclear logit plus eye openness, crop width in source pixels, |yaw| and |pitch| from the cached Face
Mesh landmarks (the very functions the plugin runs). Target: the annotators' unclear label. The threshold
maximises the balanced accuracy of the unclear decision (Youden's J: prevalence differs a lot between tasks).
Signals are clipped at 3 standard deviations and must push the expected way (more open eyes, more pixels, a more
frontal head never make a face less clear), so photos unlike FairFace's do not extrapolate spurious trends.
The estimate is cross-fitted on the CV folds (each fold's gate and threshold fitted on the other folds), with
precision and recall of "unclear" per fold and corrected-t 95 % intervals.
"""
import numpy as np

from face_recognition.ax_facial_features.constants import EYE_CROP_KINDS, UNCLEAR_OUTPUTS
from face_recognition.ax_facial_features.crops import kind_corners, source_width
from face_recognition.ax_facial_features.geometry import face_geometry
from face_recognition.ax_facial_features.unclear import (
    EXPECTED_SIGN, STANDARD_CLIP, Gate, default_features, gate_signals)
from scripts.training.metrics import HEADLINE, cv_interval, task_metrics
from scripts.training.trainer import scored_rows
from util.math_utils import sigmoid

EYE_OF_KIND = {kind: eye for eye, kind in EYE_CROP_KINDS.items()}


def signal_matrix(task, unclear_logits, landmarks, kinds):
    """(N, F) signals of ``default_features(task)`` for rows with these landmarks and crop kinds."""
    names = default_features(task)
    rows = []
    for logit, points, kind in zip(np.asarray(unclear_logits).reshape(-1), landmarks, kinds):
        signals = gate_signals(float(sigmoid(np.array([logit]))[0]), face_geometry(points),
                               source_width(kind_corners(points, kind)), EYE_OF_KIND.get(kind))
        rows.append([signals[name] for name in names])
    return np.array(rows, dtype=np.float64)


def fit_logistic(x, y, l2=1e-2, iterations=50):
    """(weights, bias) of an L2-regularised logistic regression on standardised ``x`` (Newton's method)."""
    design = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -60, 60)))
        gradient = design.T @ (p - y) / len(y) + penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design / len(y) + np.diag(penalty)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(beta)), gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def decision_balanced_accuracy(decided, y):
    """(sensitivity + specificity) / 2 of the unclear decisions."""
    return (np.mean(decided[y == 1]) + np.mean(~decided[y == 0])) / 2


def gate_scores(gate, x):
    """The gate's score of each row of signals ``x`` (columns in ``gate.features`` order)."""
    return np.array([gate.score(dict(zip(gate.features, row))) for row in x])


def youden_threshold(scores, y):
    """Score threshold maximising balanced accuracy (sensitivity + specificity) / 2."""
    candidates = np.unique(np.round(scores, 4))
    best, best_value = 0.5, -1.0
    for t in candidates:
        value = decision_balanced_accuracy(scores >= t, y)
        if value > best_value:
            best, best_value = float(t), value
    return min(max(best, 1e-4), 1 - 1e-4)


def fit_gate(task, x, y):
    """Logistic regression on clipped standardised signals; a signal whose weight has the wrong sign
    (``EXPECTED_SIGN``) is dropped (weight 0) and the rest refitted; threshold by Youden's J."""
    features = default_features(task)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    standard = np.clip((x - mean) / scale, -STANDARD_CLIP, STANDARD_CLIP)
    kept = np.ones(len(features), bool)
    while True:
        weights_kept, bias = fit_logistic(standard[:, kept], y)
        weights = np.zeros(len(features))
        weights[kept] = weights_kept
        wrong = kept & (weights * np.array([EXPECTED_SIGN[f] for f in features]) < 0)
        if not wrong.any():
            break
        kept &= ~wrong
    gate = Gate(features=features, mean=tuple(mean), scale=tuple(scale), weights=tuple(weights),
                bias=bias, threshold=0.5)
    gate.threshold = youden_threshold(gate_scores(gate, x), y)
    return gate


def decision_figures(decided, y):
    true_positive = np.sum(decided & (y == 1))
    return {"precision": float(true_positive / max(decided.sum(), 1)),
            "recall": float(true_positive / max((y == 1).sum(), 1)),
            "balanced_accuracy": float(decision_balanced_accuracy(decided, y)),
            "flagged_fraction": float(decided.mean())}


def gate_report(task, x, y, folds, n_splits):
    """The gate fitted on every row, and its cross-fitted precision / recall / balanced accuracy (vs the model's
    own unclear output at 0.5, the fallback without a gate)."""
    per_fold = {"gate": [], "model_only": []}
    for fold in range(n_splits):
        test = folds == fold
        gate = fit_gate(task, x[~test], y[~test])
        per_fold["gate"].append(decision_figures(gate_scores(gate, x[test]) >= gate.threshold, y[test]))
        per_fold["model_only"].append(decision_figures(x[test, 0] >= 0.0, y[test]))  # logit >= 0 <=> p >= 0.5
    report = {"rows": int(len(y)), "unclear_fraction": float(y.mean())}
    for name, figures in per_fold.items():
        report[name] = {}
        for key in figures[0]:
            mean, low, high, std = cv_interval([f[key] for f in figures], 1 / n_splits, bounds=(0.0, 1.0))
            report[name][key] = {"mean": mean, "low": low, "high": high}
    final = fit_gate(task, x, y)
    return final, report


def task_metric_with_and_without_unclear(task, arrays, x_all, y_all, unclear_mask, n_splits, offsets=None):
    """The task's headline metric per CV fold on its labelled rows, all of them vs those a gate fitted on the
    other folds calls clear (out-of-fold logits plus the calibration ``offsets``): what excluding unclear answers
    does to the metric, and the coverage kept. ``x_all``, ``y_all``: every row's signals and unclear target;
    ``unclear_mask``: the rows whose clarity the annotators settled (the gate's training rows)."""
    logits = arrays[f"logits/{task}"] + np.asarray(offsets if offsets is not None else 0.0)
    keep, labels = scored_rows(task, arrays[f"targets/{task}"], arrays[f"mask/{task}"].astype(bool))
    folds = arrays["fold"]
    per_fold = {"all": [], "clear_only": [], "coverage": []}
    for fold in range(n_splits):
        train = unclear_mask & (folds != fold)
        gate = fit_gate(task, x_all[train], y_all[train])
        test_rows = np.flatnonzero(keep & (folds == fold))
        clear = gate_scores(gate, x_all[test_rows]) < gate.threshold  # Gate.decide's "ok"
        test_labels = labels[np.searchsorted(np.flatnonzero(keep), test_rows)]
        per_fold["all"].append(task_metrics(task, logits[test_rows], test_labels)[HEADLINE[task]])
        per_fold["clear_only"].append(task_metrics(task, logits[test_rows][clear], test_labels[clear])[HEADLINE[task]]
                                      if clear.sum() >= 2 else float("nan"))
        per_fold["coverage"].append(float(clear.mean()))
    report = {"metric": HEADLINE[task]}
    for name, values in per_fold.items():
        mean, low, high, _ = cv_interval(values, 1 / n_splits, bounds=(0.0, 1.0))
        report[name] = {"mean": mean, "low": low, "high": high}
    return report


def gates_from_out_of_fold(arrays, cache, base_tasks, n_splits, offsets=None):
    """{task: (Gate, report)} for the tasks of one CV run (``cv_out_of_fold.npz`` arrays) whose unclear output
    was trained. ``offsets``: task -> calibration offsets of the run (for the with / without unclear metrics)."""
    landmarks = cache.landmarks[cache.rows(arrays["images"])]
    results = {}
    for task in base_tasks:
        key = UNCLEAR_OUTPUTS[task]
        if f"logits/{key}" not in arrays:
            continue
        mask = arrays[f"mask/{key}"].astype(bool)
        x_all = signal_matrix(task, arrays[f"logits/{key}"], landmarks, arrays["kinds"])
        y_all = arrays[f"targets/{key}"].reshape(-1).astype(int)
        gate, report = gate_report(task, x_all[mask], y_all[mask], arrays["fold"][mask], n_splits)
        report["task_metric_unclear_included_vs_excluded"] = task_metric_with_and_without_unclear(
            task, arrays, x_all, y_all, mask, n_splits, (offsets or {}).get(task))
        results[task] = gate, report
    return results
