"""Decision calibration: per-class logit offsets that maximise a task's headline metric, chosen on out-of-fold
predictions of cross-validation and estimated honestly by cross-fitting.

Why: the facial-hair Hamming score is computed on faces with at least one true or predicted label, so a false
positive on a clean-shaven face costs a whole sample while a missed label costs a fraction: the best threshold per
label is not 0.5. For softmax tasks an offset on a class logit moves the decision between classes (balanced
accuracy). The offsets are added to the logits inside the exported network (``MultiHeadModel.logit_offsets``), so
the plugin's plain decision rule (0.5 / argmax) applies the calibrated decision and no one needs to know.

Estimate: for each fold, offsets fitted on the other folds' out-of-fold predictions are applied to this fold
(cross-fitting); the per-fold scores get the usual corrected-t 95 % interval.
"""
import numpy as np

from face_recognition.ax_facial_features.constants import MULTI_LABEL_TASKS, SIGMOID_OUTPUTS, UNCLEAR_OUTPUTS
from scripts.training.metrics import HEADLINE, fold_interval, task_metrics
from scripts.training.set_decision import cross_fitted_set_decision
from scripts.training.trainer import scored_rows

OFFSET_GRID = np.round(np.arange(-3.0, 3.0001, 0.1), 2)
PASSES = 2


def calibrated_tasks(tasks):
    """Tasks whose decision is calibrated (not the unclear outputs: their gate has its own threshold)."""
    return [t for t in tasks if t not in UNCLEAR_OUTPUTS.values()]


def _score(task, logits, labels, offsets):
    value = task_metrics(task, logits + offsets, labels)[HEADLINE[task]]
    return -np.inf if value is None or not np.isfinite(value) else value


def fit_offsets(task, logits, labels):
    """Per-class offsets (C,) by coordinate ascent over ``OFFSET_GRID``; class 0 of a softmax task stays at 0
    (only differences matter). Ties keep the offset nearest 0."""
    offsets = np.zeros(logits.shape[1])
    free = range(logits.shape[1]) if task in SIGMOID_OUTPUTS else range(1, logits.shape[1])
    best = _score(task, logits, labels, offsets)
    for _ in range(PASSES):
        for c in free:
            for value in sorted(OFFSET_GRID, key=abs):
                trial = offsets.copy()
                trial[c] = value
                score = _score(task, logits, labels, trial)
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


def calibrate(task, logits, targets, mask, fold_of_row, n_splits):
    """Offsets fitted on all out-of-fold rows, and the cross-fitted estimate of the headline metric with and
    without them. ``fold_of_row``: the test fold of each row in the CV that made ``logits``."""
    keep, labels = scored_rows(task, targets, mask)
    logits, folds = logits[keep], np.asarray(fold_of_row)[keep]
    per_fold = {"uncalibrated": [], "calibrated": []}
    for fold in range(n_splits):
        test = folds == fold
        offsets = fit_offsets(task, logits[~test], labels[~test])
        per_fold["uncalibrated"].append(_score(task, logits[test], labels[test], np.zeros(logits.shape[1])))
        per_fold["calibrated"].append(_score(task, logits[test], labels[test], offsets))
    report = {"metric": HEADLINE[task], "offsets": fit_offsets(task, logits, labels).tolist()}
    for name, scores in per_fold.items():
        report[name] = fold_interval(scores, n_splits)
    if task in MULTI_LABEL_TASKS:
        # paired with "uncalibrated", the same folds' plain 0.5 threshold
        chosen = cross_fitted_set_decision(logits, labels, folds, n_splits)
        report["set_decision"] = {
            "set_decision": fold_interval(chosen, n_splits),
            "difference": fold_interval(list(np.subtract(chosen, per_fold["uncalibrated"])), n_splits, (-1.0, 1.0))}
    return report
