"""Labelled datasets: a folder of images plus a CSV of labels (format in scripts/training/README.md).

``EyeLabels`` and ``FacialHairLabels`` read one CSV each. Targets are per task, as float rows plus a mask:
- single-label tasks (eyelids, eyelashes): a probability row over the classes (one-hot; a "hybrid" face is
  [0.5, 0.5] when ``hybrid="soft"``); ``hard_labels`` gives the integer class, -1 for soft or missing rows;
- multi-label (facial hair): 0/1 per label.
The mask is False where a task has no usable label (unclear, disputed, missing).

A horizontal flip mirrors the face: per-eye columns (image-left / image-right) swap, face-level labels stay
(``flipped()``).

Option ``unclear=True`` adds one binary target per task, ``<task>_unclear`` (constants.UNCLEAR_OUTPUTS): 1 where
the annotators marked the task unclear, 0 where they gave a label, masked out where they disagreed (disputed).

``PerEyeLabels`` has one row per eye (two per photo), for the per-eye eyelid model: its rows' crop kinds differ
(``row_kinds``), and cross-validation must keep both eyes of a photo in one fold (``split_groups``).
"""
import csv
import logging
import os

import numpy as np

from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, EYE_BAND, EYE_CROP_KINDS, EYELASHES, EYELIDS, FACE, FACIAL_HAIR, PER_EYE_CROP, PER_EYE_EYELID,
    SIGMOID_OUTPUTS,
    SUBJECT_LEFT, SUBJECT_RIGHT, UNCLEAR_OUTPUTS)
from util.errors import InputError

logger = logging.getLogger(__name__)

HYBRID_POLICIES = ("exclude", "soft")


def refuse_holdout(path):
    """Training never reads a holdout folder: refuse any path with a ``holdout`` component."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    if "holdout" in parts:
        raise InputError(f"{path}: holdout data is for evaluation only, never for training or model selection")


def read_csv_columns(csv_path, allow_holdout=False):
    """CSV -> dict column -> np.ndarray of stripped strings (holdout paths only for evaluation)."""
    if not allow_holdout:
        refuse_holdout(csv_path)
    if not os.path.isfile(csv_path):
        raise InputError(f"{csv_path}: no such label file")
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(f"{csv_path}: no label rows")
    return {name: np.array([(row.get(name) or "").strip() for row in rows], dtype=object) for name in rows[0]}


def face_eyelid_label(left, right):
    """Face-level eyelid label from the two per-eye labels: double, single, hybrid or None (unclear)."""
    if left in ("double", "single") and right in ("double", "single"):
        return left if left == right else "hybrid"
    return None


def hard_labels(targets, mask):
    """Integer class of one-hot rows; -1 for masked-out or soft rows."""
    labels = targets.argmax(axis=1)
    one_hot = np.isclose(targets.max(axis=1), 1.0)
    return np.where(mask & one_hot, labels, -1)


class LabelTable:
    """Rows of one label CSV whose image exists in ``images_dir``. Subclasses set the tasks, the crop kind, the
    required columns, the per-eye column pairs swapped by a flip, and ``_derive_targets``."""

    tasks = ()
    crop_kind = None
    label_columns = ()  # at least one of them must be present
    mirror_pairs = ()

    def __init__(self, columns, images_dir, options=None):
        self.columns = columns
        self.images_dir = images_dir
        self.options = dict(options or {})
        self.targets, self.masks = self._derive_targets()
        self.base_tasks = type(self).tasks
        if self.options.get("unclear"):
            self.tasks = self.base_tasks + tuple(UNCLEAR_OUTPUTS[t] for t in self.base_tasks)
            for task in self.base_tasks:
                unclear, mask = self._unclear_targets(task)
                self.targets[UNCLEAR_OUTPUTS[task]], self.masks[UNCLEAR_OUTPUTS[task]] = unclear[:, None], mask

    @classmethod
    def load(cls, csv_path, images_dir, allow_holdout=False, **options):
        """``allow_holdout`` is for evaluation only (scripts/evaluate.py): training never reads holdout data."""
        if not allow_holdout:
            refuse_holdout(images_dir)
        columns = read_csv_columns(csv_path, allow_holdout)
        if "image" not in columns or not any(c in columns for c in cls.label_columns):
            raise InputError(f"{csv_path}: needs an 'image' column and one of {list(cls.label_columns)}")
        exists = np.array([os.path.isfile(os.path.join(images_dir, name)) for name in columns["image"]])
        if not exists.any():
            raise InputError(f"{csv_path}: none of its images is in {images_dir}")
        if not exists.all():
            logger.warning("%s: %d image(s) missing from %s, skipped", csv_path, (~exists).sum(), images_dir)
        return cls({k: v[exists] for k, v in columns.items()}, images_dir, options)

    def __len__(self):
        return len(self.columns["image"])

    @property
    def images(self):
        return self.columns["image"]

    def image_path(self, row):
        return os.path.join(self.images_dir, self.images[row])

    def column(self, name, default=""):
        return self.columns.get(name, np.full(len(self), default, dtype=object))

    def subset(self, rows):
        return type(self)({k: v[rows] for k, v in self.columns.items()}, self.images_dir, self.options)

    def flipped(self):
        """The table of the horizontally mirrored images: per-eye columns swapped, targets derived again."""
        columns = dict(self.columns)
        for a, b in self.mirror_pairs:
            if a in columns and b in columns:
                columns[a], columns[b] = self.columns[b], self.columns[a]
        return type(self)(columns, self.images_dir, self.options)

    def row_kinds(self):
        """Crop kind of each row (one kind for the whole table, except per-eye tables)."""
        return np.full(len(self), self.crop_kind, dtype=object)

    def split_groups(self):
        """Rows that must stay in one cross-validation fold share a group (here: one row per photo)."""
        return np.asarray(self.images)

    def hard_labels(self, task):
        return hard_labels(self.targets[task], self.masks[task])

    def labelled_rows(self):
        """Rows with at least one task label."""
        return np.flatnonzero(np.any([self.masks[t] for t in self.tasks], axis=0))

    def strata(self, tasks=None):
        """Stratification key per row: the combination of the rows' labels over ``tasks`` (default: the main
        tasks, not the unclear ones)."""
        keys = []
        for task in tasks or self.base_tasks:
            if task in SIGMOID_OUTPUTS:
                bits = (self.targets[task] > 0.5).astype(int) @ (1 << np.arange(self.targets[task].shape[1]))
                keys.append(np.where(self.masks[task], bits, -1))
            else:
                soft = self.masks[task] & (self.hard_labels(task) < 0)
                keys.append(np.where(soft, 99, self.hard_labels(task)))
        return np.array(["/".join(map(str, k)) for k in zip(*keys)])

    def class_counts(self, task):
        """Label count per class (rows with the task label)."""
        return dict(zip(CLASS_NAMES[task], self.targets[task][self.masks[task]].sum(axis=0).round(1).tolist()))

    def _derive_targets(self):
        raise NotImplementedError

    def _unclear_targets(self, task):
        """(0/1 unclear per row, mask of rows whose clarity the annotators settled)."""
        raise NotImplementedError


def one_hot_rows(values, class_names, soft=None):
    """Strings -> (rows, mask); ``soft`` maps extra strings to a fixed probability row."""
    soft = soft or {}
    rows = np.zeros((len(values), len(class_names)), dtype=np.float32)
    mask = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value in class_names:
            rows[i, class_names.index(value)] = 1.0
            mask[i] = True
        elif value in soft:
            rows[i] = soft[value]
            mask[i] = True
    return rows, mask


class EyeLabels(LabelTable):
    """labels_eyes.csv format: image, eyelid_img_left, eyelid_img_right (double|single|unclear, for the eye on the
    IMAGE-left / IMAGE-right side), eyelashes (dense|moderate|sparse|unclear). Option ``hybrid``: "exclude"
    (default: one double and one single eye gives no eyelid label) or "soft" ([0.5, 0.5] target)."""

    tasks = (EYELIDS, EYELASHES)
    crop_kind = EYE_BAND
    label_columns = ("eyelid_img_left", "eyelid_img_right", "eyelashes")
    mirror_pairs = (("eyelid_img_left", "eyelid_img_right"),)

    def _derive_targets(self):
        hybrid = self.options.get("hybrid", "exclude")
        if hybrid not in HYBRID_POLICIES:
            raise ValueError(f"hybrid must be one of {HYBRID_POLICIES}")
        faces = [face_eyelid_label(l, r) for l, r in zip(self.column("eyelid_img_left"),
                                                          self.column("eyelid_img_right"))]
        soft = {"hybrid": [0.5, 0.5]} if hybrid == "soft" else {}
        eyelids = one_hot_rows(faces, list(CLASS_NAMES[EYELIDS]), soft)
        eyelashes = one_hot_rows(self.column("eyelashes"), list(CLASS_NAMES[EYELASHES]))
        return {EYELIDS: eyelids[0], EYELASHES: eyelashes[0]}, {EYELIDS: eyelids[1], EYELASHES: eyelashes[1]}

    def _unclear_targets(self, task):
        if task == EYELIDS:  # the face-level answer is unclear as soon as one eye is
            left, right = self.column("eyelid_img_left"), self.column("eyelid_img_right")
            either = (left == "unclear") | (right == "unclear")
            judged = np.isin(left, EYELID_ANSWERS) & np.isin(right, EYELID_ANSWERS)
            return either.astype(np.float32), judged
        values = self.column("eyelashes")
        return (values == "unclear").astype(np.float32), np.isin(values, CLASS_NAMES[EYELASHES] + ("unclear",))


EYELID_ANSWERS = CLASS_NAMES[EYELIDS] + ("unclear",)
# labels_eyes.csv names each eye by its image side: the eye on the image's left is the subject's right eye.
EYE_LABEL_COLUMNS = {SUBJECT_RIGHT: "eyelid_img_left", SUBJECT_LEFT: "eyelid_img_right"}


class PerEyeLabels(LabelTable):
    """One row per eye, made from the eye CSV (``from_eye_table``): columns image, eye (the SUBJECT's "right" =
    the CSV's eyelid_img_left, "left" = eyelid_img_right), eyelid (double|single|unclear), plus the photo's other
    columns (race, gender, age). Each row is fed the crop of its own eye (``row_kinds``), both in one canonical
    orientation, so a flip changes no label."""

    tasks = (PER_EYE_EYELID,)
    crop_kind = PER_EYE_CROP  # the manifest's name for "one crop per eye" (kinds EYE_CROP_KINDS)
    label_columns = ("eyelid",)

    @classmethod
    def from_eye_table(cls, eye_table, **options):
        n = len(eye_table)
        columns = {name: np.concatenate([values, values]) for name, values in eye_table.columns.items()
                   if name not in EYE_LABEL_COLUMNS.values()}
        columns["eye"] = np.array([SUBJECT_RIGHT] * n + [SUBJECT_LEFT] * n, dtype=object)
        columns["eyelid"] = np.concatenate([eye_table.column(EYE_LABEL_COLUMNS[SUBJECT_RIGHT]),
                                            eye_table.column(EYE_LABEL_COLUMNS[SUBJECT_LEFT])])
        return cls(columns, eye_table.images_dir, {**eye_table.options, **options})

    def row_kinds(self):
        return np.array([EYE_CROP_KINDS[eye] for eye in self.columns["eye"]], dtype=object)

    def _derive_targets(self):
        eyelid = one_hot_rows(self.column("eyelid"), list(CLASS_NAMES[PER_EYE_EYELID]))
        return {PER_EYE_EYELID: eyelid[0]}, {PER_EYE_EYELID: eyelid[1]}

    def _unclear_targets(self, task):
        values = self.column("eyelid")
        return (values == "unclear").astype(np.float32), np.isin(values, EYELID_ANSWERS)


class FacialHairLabels(LabelTable):
    """labels_facial_hair.csv format: image, moustache, beard, mouth_side_hair (0|1); optional status (only "ok"
    rows are labelled; without the column every row counts as ok)."""

    tasks = (FACIAL_HAIR,)
    crop_kind = FACE
    label_columns = CLASS_NAMES[FACIAL_HAIR]

    def _derive_targets(self):
        names = CLASS_NAMES[FACIAL_HAIR]
        values = np.stack([self.column(name) for name in names], axis=1)
        valid = np.all(np.isin(values, ["0", "1"]), axis=1) & (self.column("status", "ok") == "ok")
        targets = np.where(valid[:, None], values == "1", False).astype(np.float32)
        return {FACIAL_HAIR: targets}, {FACIAL_HAIR: valid}

    def _unclear_targets(self, task):
        status = self.column("status", "ok")
        return (status == "unclear").astype(np.float32), np.isin(status, ("ok", "unclear"))


# Task groups: one network each (the eye model has two heads on a shared backbone; the per-eye model reads the
# eye CSV, one row per eye).
GROUPS = {"eyes": EyeLabels, "facial_hair": FacialHairLabels, "per_eye": PerEyeLabels}
DEFAULT_CSV = {"eyes": "labels_eyes.csv", "facial_hair": "labels_facial_hair.csv", "per_eye": "labels_eyes.csv"}


def load_group(group, dataset_dir=None, csv_path=None, images_dir=None, **options):
    """Load a task group's table from ``dataset_dir`` (images/ + the default CSV name) or explicit paths."""
    csv_path = csv_path or os.path.join(dataset_dir, DEFAULT_CSV[group])
    images_dir = images_dir or os.path.join(dataset_dir, "images")
    if group == "per_eye":
        return PerEyeLabels.from_eye_table(EyeLabels.load(csv_path, images_dir), **options)
    return GROUPS[group].load(csv_path, images_dir, **options)
