"""Evaluation of the whole plugin on a labelled folder: image -> detection -> mesh -> crops -> models -> metrics.

Unlike cross-validation on cached crops, this runs ``FacialFeatures.process`` exactly as users do, so it measures
detection misses and the shipped models together. Per task: the seed's metrics with 95 % bootstrap intervals,
a confusion matrix (single-label) or per-label counts (multi-label), the same split by each group column of the
CSV (e.g. FairFace race, gender, age), and the faces the detector missed. Each task's figures count every labelled
face, including those the plugin marks unclear; ``unclear`` gives them again over the faces it calls clear (status
ok), with the coverage (fraction kept). With a per-eye analyser, ``per_eye`` scores each eye, the face's eyelid
type (double / single / hybrid) and its agreement with the face-level eyelids model.
"""
import logging
import time

import numpy as np

from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, EYELID_TYPES, EYELIDS, MULTI_LABEL_TASKS, PER_EYE_ORDER, STATUS_OK, STATUS_UNCLEAR)
from face_recognition.ax_facial_features.pipeline import eyelid_type_of_labels
from scripts.training.crop_cache import select_face
from scripts.training.datasets import EYE_LABEL_COLUMNS, GROUPS, face_eyelid_label
from scripts.training.metrics import (
    HEADLINE, accuracy, balanced_accuracy, bootstrap_interval, json_ready, task_metrics)
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


def face_summary(face):
    """What evaluation keeps of a face (not its crops): per task the probability vector and whether the plugin
    calls the answer clear; with per-eye results, the same per eye and the face's eyelid type."""
    summary = {"probs": {task: np.array(list(r.probs.values())) for task, r in face.results.items()},
               "clear": {task: r.status == STATUS_OK for task, r in face.results.items()}}
    if face.per_eye is not None:
        summary["per_eye"] = {eye: np.array(list(r.probs.values())) for eye, r in face.per_eye.items()}
        summary["per_eye_clear"] = {eye: r.status == STATUS_OK for eye, r in face.per_eye.items()}
        summary["eyelids_type"] = face.eyelids_type
    return summary


def predict_labelled_faces(analyser, image_paths, progress=None, summarise=face_summary):
    """{image path: summarise(face)} for the labelled face of each image, or None when no face."""
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
        predictions[path] = None if chosen is None else summarise(faces[chosen])
        if progress:
            progress(index + 1, len(image_paths))
    return predictions


def _metrics_with_intervals(task, probabilities, targets, n_resamples, seed, clusters=None):
    """``clusters``: one id per row whose rows are resampled together (the face of each eye)."""
    logits = probabilities_to_logits(task, probabilities)
    metrics = task_metrics(task, logits, targets)
    headline = HEADLINE[task]
    estimate, low, high = bootstrap_interval(lambda l, t: task_metrics(task, l, t)[headline], [logits, targets],
                                             n_resamples=n_resamples, seed=seed, clusters=clusters)
    metrics[f"{headline}_ci95"] = [low, high]
    if task not in MULTI_LABEL_TASKS:
        _, acc_low, acc_high = bootstrap_interval(lambda l, t: task_metrics(task, l, t)["accuracy"],
                                                  [logits, targets], n_resamples=n_resamples, seed=seed,
                                                  clusters=clusters)
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
    probabilities = np.stack([predictions[paths[row]]["probs"][task] for row in scored])
    targets = np.asarray(targets_all)[scored]
    report["overall"] = _metrics_with_intervals(task, probabilities, targets, n_resamples, seed)
    report["confusion"] = confusion_matrix(task, probabilities, targets)
    clear = np.array([predictions[paths[row]]["clear"][task] for row in scored])
    report["unclear"] = clear_only_report(task, probabilities, targets, clear, n_resamples, seed)
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


def clear_only_report(task, probabilities, targets, clear, n_resamples=1000, seed=0, clusters=None):
    """The task's metrics over the faces (or eyes) the plugin calls clear, and the coverage: fraction kept."""
    clear = np.asarray(clear, dtype=bool)
    report = {"unclear": int((~clear).sum()), "clear": int(clear.sum()),
              "coverage": float(clear.mean()) if len(clear) else None}
    if clear.sum() >= 2:
        kept_clusters = None if clusters is None else np.asarray(clusters)[clear]
        report["overall"] = _metrics_with_intervals(task, probabilities[clear], targets[clear], n_resamples, seed,
                                                    kept_clusters)
        report["confusion"] = confusion_matrix(task, probabilities[clear], targets[clear])
    return report


def per_eye_report(table, predictions, n_resamples=1000, seed=0):
    """Per-eye eyelids: each eye against its own label (double / single only), the face's type against the CSV's
    face label (double / single / hybrid), and agreement of that type with the face-level eyelids model."""
    faces = [predictions.get(table.image_path(row)) for row in range(len(table))]
    faces = [face if face is not None and "per_eye" in face else None for face in faces]
    return {"eyes": _per_eye_eyes(table, faces, n_resamples, seed),
            "face_type": _per_eye_face_type(table, faces, n_resamples, seed),
            "agreement_with_face_model": _per_eye_agreement(faces, n_resamples, seed)}


def _per_eye_eyes(table, faces, n_resamples, seed):
    """Each eye against its own label; intervals resample faces (a face's two eyes are not independent)."""
    probabilities, targets, clear, face_of_eye = [], [], [], []
    for row, face in enumerate(faces):
        for eye, column in EYE_LABEL_COLUMNS.items():
            label = table.column(column)[row]
            if face is not None and label in CLASS_NAMES[EYELIDS]:
                probabilities.append(face["per_eye"][eye])
                targets.append(CLASS_NAMES[EYELIDS].index(label))
                clear.append(face["per_eye_clear"][eye])
                face_of_eye.append(row)
    report = {"scored": len(targets), "faces": len(set(face_of_eye))}
    if len(targets) >= 2:
        probabilities, targets = np.stack(probabilities), np.asarray(targets)
        # Per-eye answers are double / single like the face-level eyelids: the same metrics apply.
        report["overall"] = _metrics_with_intervals(EYELIDS, probabilities, targets, n_resamples, seed, face_of_eye)
        report["confusion"] = confusion_matrix(EYELIDS, probabilities, targets)
        report["unclear"] = clear_only_report(EYELIDS, probabilities, targets, clear, n_resamples, seed,
                                              face_of_eye)
    return report


def _type_metrics(truth, predicted, n_resamples, seed):
    """Accuracy and balanced accuracy (with bootstrap intervals) and confusion of face eyelid types."""
    classes = len(EYELID_TYPES)
    report = {"count": len(truth)}
    if len(truth) < 2:
        return report
    for name, metric in (("accuracy", accuracy),
                         ("balanced_accuracy", lambda t, p: balanced_accuracy(t, p, classes))):
        estimate, low, high = bootstrap_interval(metric, [truth, predicted], n_resamples=n_resamples, seed=seed)
        report[name], report[f"{name}_ci95"] = estimate, [low, high]
    matrix = np.zeros((classes, classes), dtype=int)
    for t, p in zip(truth, predicted):
        matrix[t, p] += 1
    report["confusion"] = {"rows_true_cols_predicted": list(EYELID_TYPES), "matrix": matrix.tolist()}
    return report


def _per_eye_face_type(table, faces, n_resamples, seed):
    """All faces: the type from the two eyes' labels whatever their status; clear only: faces whose type is not
    unclear (both eyes clear)."""
    truth, from_labels, reported = [], [], []
    for row, face in enumerate(faces):
        label = face_eyelid_label(table.column("eyelid_img_left")[row], table.column("eyelid_img_right")[row])
        if face is None or label is None:
            continue
        truth.append(EYELID_TYPES.index(label))
        eye_labels = [CLASS_NAMES[EYELIDS][int(np.argmax(face["per_eye"][eye]))] for eye in PER_EYE_ORDER]
        from_labels.append(EYELID_TYPES.index(eyelid_type_of_labels(*eye_labels)))
        reported.append(face["eyelids_type"])
    truth, from_labels = np.asarray(truth, dtype=int), np.asarray(from_labels, dtype=int)
    clear = np.array([t != STATUS_UNCLEAR for t in reported], dtype=bool)
    return {"all": _type_metrics(truth, from_labels, n_resamples, seed),
            "clear_only": _type_metrics(truth[clear], from_labels[clear], n_resamples, seed),
            "coverage": float(clear.mean()) if len(clear) else None}


def _per_eye_agreement(faces, n_resamples, seed):
    """Fraction of faces where the per-eye type (double or single: clear and not hybrid) equals the face-level
    eyelids model's label. Needs no labels: every detected face counts."""
    agree = [face["eyelids_type"] == CLASS_NAMES[EYELIDS][int(np.argmax(face["probs"][EYELIDS]))]
             for face in faces if face is not None and EYELIDS in face["probs"]
             and face["eyelids_type"] in CLASS_NAMES[EYELIDS]]
    report = {"faces": len(agree)}
    if len(agree) >= 2:
        estimate, low, high = bootstrap_interval(np.mean, [np.asarray(agree, dtype=float)],
                                                 n_resamples=n_resamples, seed=seed)
        report["agreement"], report["agreement_ci95"] = estimate, [low, high]
    return report


def hybrid_eyelid_report(table, predictions):
    """Faces whose eyes were labelled one double and one single: not scored (the face model has no hybrid
    class); what it predicts for them is reported."""
    hybrid_rows = [row for row in range(len(table)) if face_eyelid_label(
        table.columns.get("eyelid_img_left", [""] * len(table))[row],
        table.columns.get("eyelid_img_right", [""] * len(table))[row]) == "hybrid"]
    predicted = [predictions.get(table.image_path(row)) for row in hybrid_rows]
    labels = [CLASS_NAMES[EYELIDS][int(np.argmax(p["probs"][EYELIDS]))] for p in predicted
              if p is not None and EYELIDS in p["probs"]]
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
        if group == "eyes" and getattr(analyser, "per_eye", False):
            report["per_eye"] = per_eye_report(table, predictions, n_resamples)
    report["seconds"] = round(time.time() - started, 1)
    return json_ready(report)
