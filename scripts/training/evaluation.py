"""Evaluation of the whole plugin on a labelled folder: image -> detection -> mesh -> crops -> models -> metrics.

Unlike cross-validation on cached crops, this runs ``FacialFeatures.process`` exactly as users do, so it measures
detection misses and the shipped models together. Per task: the seed's metrics with 95 % bootstrap intervals,
a confusion matrix (single-label) or per-label counts (multi-label), the same split by each group column of the
CSV (e.g. FairFace race, gender, age), and the faces the detector missed.
"""
import logging
import time

import numpy as np

from face_recognition.ax_facial_features.constants import CLASS_NAMES, EYELIDS, MULTI_LABEL_TASKS
from scripts.training.crop_cache import select_face
from scripts.training.datasets import GROUPS, face_eyelid_label
from scripts.training.metrics import HEADLINE, bootstrap_interval, json_ready, task_metrics
from util.errors import AxError
from util.image_utils import imread

logger = logging.getLogger(__name__)

DEFAULT_GROUP_COLUMNS = ("race", "gender", "age")
_EPS = 1e-7


def probabilities_to_logits(task, probabilities):
    """Logits whose activation gives back ``probabilities``, so that the training metrics (defined on logits)
    apply unchanged: log p for softmax tasks, log(p / (1 - p)) for sigmoid tasks."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p)) if task in MULTI_LABEL_TASKS else np.log(p)


def predict_labelled_faces(analyser, image_paths, progress=None):
    """{image path: {task: probability vector}} for the labelled face of each image, or None when no face."""
    predictions = {}
    for index, path in enumerate(image_paths):
        try:
            image = imread(path)
            faces = analyser.process(image)
        except AxError as e:
            logger.warning("%s", e)
            predictions[path] = None
            continue
        chosen = select_face([face.mesh.landmarks for face in faces], image.shape)
        predictions[path] = None if chosen is None else {
            task: np.array(list(result.probs.values())) for task, result in faces[chosen].results.items()}
        if progress:
            progress(index + 1, len(image_paths))
    return predictions


def _metrics_with_intervals(task, probabilities, targets, n_resamples, seed):
    logits = probabilities_to_logits(task, probabilities)
    metrics = task_metrics(task, logits, targets)
    headline = HEADLINE[task]
    estimate, low, high = bootstrap_interval(lambda l, t: task_metrics(task, l, t)[headline], [logits, targets],
                                             n_resamples=n_resamples, seed=seed)
    metrics[f"{headline}_ci95"] = [low, high]
    if task not in MULTI_LABEL_TASKS:
        _, acc_low, acc_high = bootstrap_interval(lambda l, t: task_metrics(task, l, t)["accuracy"],
                                                  [logits, targets], n_resamples=n_resamples, seed=seed)
        metrics["accuracy_ci95"] = [acc_low, acc_high]
    return metrics


def confusion_matrix(task, probabilities, targets):
    names = CLASS_NAMES[task]
    if task in MULTI_LABEL_TASKS:
        decisions = np.asarray(probabilities) >= 0.5
        truth = np.asarray(targets) > 0.5
        return {name: {"tp": int((truth[:, i] & decisions[:, i]).sum()), "fp": int((~truth[:, i] & decisions[:, i]).sum()),
                       "fn": int((truth[:, i] & ~decisions[:, i]).sum()), "tn": int((~truth[:, i] & ~decisions[:, i]).sum())}
                for i, name in enumerate(names)}
    predicted = np.asarray(probabilities).argmax(axis=1)
    matrix = np.zeros((len(names), len(names)), dtype=int)
    for t, p in zip(targets, predicted):
        matrix[t, p] += 1
    return {"rows_true_cols_predicted": list(names), "matrix": matrix.tolist()}


def evaluate_task(task, table, predictions, group_columns, n_resamples=1000, seed=0):
    """Metrics of one task over the rows of ``table`` that have its label and a detected face."""
    mask = table.masks[task]
    targets_all = table.targets[task] if task in MULTI_LABEL_TASKS else table.hard_labels(task)
    paths = [table.image_path(row) for row in range(len(table))]
    labelled = [row for row in np.flatnonzero(mask) if task in MULTI_LABEL_TASKS or targets_all[row] >= 0]
    scored = [row for row in labelled if predictions.get(paths[row]) is not None]
    missed = [table.images[row] for row in labelled if predictions.get(paths[row]) is None]
    report = {"labelled": len(labelled), "scored": len(scored), "missed_faces": len(missed),
              "missed_images": missed}
    if not scored:
        return report
    probabilities = np.stack([predictions[paths[row]][task] for row in scored])
    targets = np.asarray(targets_all)[scored]
    report["overall"] = _metrics_with_intervals(task, probabilities, targets, n_resamples, seed)
    report["confusion"] = confusion_matrix(task, probabilities, targets)
    report["groups"] = {}
    for column in group_columns:
        if column not in table.columns:
            continue
        values = np.asarray(table.columns[column])[scored]
        report["groups"][column] = {}
        for value in sorted(set(values)):
            members = values == value
            entry = {"count": int(members.sum())}
            if task not in MULTI_LABEL_TASKS:
                present = sorted(set(int(t) for t in targets[members]))
                entry["classes_present"] = [CLASS_NAMES[task][c] for c in present]
            if members.sum() >= 2:
                entry.update(_metrics_with_intervals(task, probabilities[members], targets[members],
                                                     n_resamples, seed))
            report["groups"][column][value] = entry
    return report


def hybrid_eyelid_report(table, predictions):
    """Faces whose eyes were labelled one double and one single: not scored (the face model has no hybrid
    class); what it predicts for them is reported."""
    hybrid_rows = [row for row in range(len(table)) if face_eyelid_label(
        table.columns.get("eyelid_img_left", [""] * len(table))[row],
        table.columns.get("eyelid_img_right", [""] * len(table))[row]) == "hybrid"]
    predicted = [predictions.get(table.image_path(row)) for row in hybrid_rows]
    labels = [CLASS_NAMES[EYELIDS][int(np.argmax(p[EYELIDS]))] for p in predicted if p is not None and EYELIDS in p]
    return {"faces": len(hybrid_rows), "predicted": {name: labels.count(name) for name in CLASS_NAMES[EYELIDS]}}


def evaluate(analyser, label_sources, group_columns=DEFAULT_GROUP_COLUMNS, n_resamples=1000, progress=None):
    """``label_sources``: {group ("eyes" / "facial_hair"): (csv path, images dir)}. Returns a JSON-ready report."""
    started = time.time()
    tables = {group: GROUPS[group].load(csv_path, images_dir, allow_holdout=True)
              for group, (csv_path, images_dir) in label_sources.items()}
    paths = sorted({table.image_path(row) for table in tables.values() for row in range(len(table))})
    predictions = predict_labelled_faces(analyser, paths, progress)
    report = {"images": len(paths), "images_without_face": sum(p is None for p in predictions.values()),
              "models": analyser.model_info(), "tasks": {}}
    for group, table in tables.items():
        for task in table.tasks:
            if task in analyser.tasks:
                report["tasks"][task] = evaluate_task(task, table, predictions, group_columns, n_resamples)
        if group == "eyes" and EYELIDS in analyser.tasks:
            report["hybrid_eyelids"] = hybrid_eyelid_report(table, predictions)
    report["seconds"] = round(time.time() - started, 1)
    return json_ready(report)
