"""Fine-tuning of a task group's network: the last K backbone stages and the heads.

Default (K below the number of stages): the activations before the last K stages are computed once per face and
view (plain, flipped, augmented crops), so each step runs only those stages and the heads. K equal to or above
the number of stages is a full fine-tune, with augmented crops cut from the original images at every step (slow
on CPU: ~0.15-0.2 s per image per step for MobileNetV2).

``cross_validate_finetune`` estimates the metrics by repeated stratified k-fold (fixed epochs, no selection on the
test folds); ``train_final`` trains on every labelled face (optionally minus a validation part, for curves), then
writes the checkpoint, the ONNX export and its check, the JSON log and the metric plots into a run folder.
"""
import copy
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from face_recognition.ax_facial_features.crops import crop_size
from scripts.training.backbones import build_backbone
from scripts.training.cv import (cross_validate, paired_headline_gain, per_group_out_of_fold, pooled_out_of_fold,
                                 repeated_splits, summarise_folds)
from scripts.training.export import export_and_verify
from scripts.training.features import prefix_activation_views
from scripts.training.metrics import HEADLINE, json_ready
from scripts.training.models import BackboneTail, MultiHeadModel, build_heads, ensemble_of, save_checkpoint
from scripts.training.plots import plot_history
from scripts.training.selection import trainable_rows
from scripts.training.trainer import OnTheFlySource, TargetBank, ViewSource, fit, seeded_member_config
from util.file_utils import write_json_atomic

logger = logging.getLogger(__name__)


@dataclass
class FinetuneSpec:
    backbone: str = "mobilenet_v2"
    head: str = "linear"
    train_stages: int = 3  # K last stages trained (>= number of stages: full fine-tune)
    augmented_views: int = 6  # cached augmented views per face, on top of plain and flipped
    weights: str = "imagenet"  # or a .pth file (required for resnet50)
    head_options: dict = field(default_factory=dict)
    input_downsample: int = 1  # average-pool the crop by this factor inside the network (2: 256 -> 128)
    input_window: tuple = None  # (top, bottom, left, right): the part of the crop the network reads
    flip_average: bool = False  # scored and exported as the mean logits of the crop and its mirror image
    ensemble: int = 1  # members trained with seeds seed, seed + 1, ...; exported as one network (shared stages)

    def to_dict(self):
        return asdict(self)


class Prepared:
    """The pristine backbone, the training rows and their source, shared by every fold and the final fit."""

    def __init__(self, table, cache, spec, seed=0):
        if spec.ensemble < 1 or (spec.ensemble > 1 and spec.head != "linear"):
            raise ValueError("an ensemble needs at least one member, and linear heads (merged into one network)")
        self.table, self.spec = table, spec
        self.backbone = build_backbone(spec.backbone, spec.weights, spec.input_downsample, spec.input_window)
        num_stages = len(self.backbone.stages())
        self.full = spec.train_stages >= num_stages
        self.start = 0 if self.full else num_stages - spec.train_stages
        self.rows, cache_rows = trainable_rows(table, cache)
        kinds = table.row_kinds()[self.rows]
        self.input_size = crop_size(kinds[0])
        self.groups = table.split_groups()[self.rows]
        if self.full:
            if len(set(kinds)) > 1:
                raise ValueError("a full fine-tune cuts one crop kind on the fly: not for per-eye tables")
            self.source = OnTheFlySource(table, cache, kinds[0])
        else:
            started = time.time()
            inputs, flips = prefix_activation_views(spec.backbone, self.backbone, self.start, cache,
                                                    kinds, cache_rows, spec.augmented_views, seed,
                                                    spec.weights)
            logger.info("cached %s activations %s (%.0f MB) in %.0f s", spec.backbone, inputs.shape,
                        inputs.nbytes / 2**20, time.time() - started)
            self.source = ViewSource(self.rows, inputs, flips, TargetBank(table))

    def new_model(self):
        """(fresh model from the pristine weights, trainable trunk parameters)."""
        backbone = copy.deepcopy(self.backbone)
        trunk = backbone if self.full else BackboneTail(backbone, self.start)
        heads = build_heads(self.table.tasks, backbone.feature_dim, self.spec.head, **self.spec.head_options)
        return MultiHeadModel(trunk, heads), backbone.tail_parameters(self.spec.train_stages)


def deployable(model):
    """The full network (whole backbone + heads) of a model trained on a backbone tail."""
    trunk = model.trunk.backbone if isinstance(model.trunk, BackboneTail) else model.trunk
    return MultiHeadModel(trunk, dict(model.heads.items())).eval()


def cross_validate_finetune(prepared, config, n_splits=5, n_repeats=1, seed=0):
    """CV report: summary with 95 % intervals, pooled out-of-fold metrics, and per-fold records with their
    per-epoch curves (the test fold is only logged, never used to choose anything)."""
    strata = prepared.table.strata()[prepared.rows]
    records, out_of_fold = cross_validate(prepared.new_model, prepared.source, prepared.rows, strata, config,
                                          n_splits, n_repeats, seed, log_test_curves=True,
                                          on_fold=lambda r: logger.info("fold %d/%d: %s", r["repeat"], r["fold"],
                                                                        _headlines(r["metrics"])),
                                          groups=prepared.groups, flip_average=prepared.spec.flip_average,
                                          members=prepared.spec.ensemble)
    groups = {column: np.asarray(prepared.table.columns[column])[prepared.rows]
              for column in GROUP_COLUMNS if column in prepared.table.columns}
    report = {}
    if "single_model_metrics" in records[0]:
        report = {"single_model_plain": summarise_folds(records, n_splits, "single_model_metrics"),
                  "gain_over_single_model_plain": paired_headline_gain(records, n_splits)}
    return {"summary": summarise_folds(records, n_splits), **report,
            "pooled_out_of_fold": pooled_out_of_fold(out_of_fold, prepared.source.bank, prepared.rows, seed),
            "per_group_out_of_fold": per_group_out_of_fold(out_of_fold, prepared.source.bank, prepared.rows,
                                                           groups, seed),
            "folds": records, "faces": int(len(prepared.rows)),
            "out_of_fold": out_of_fold}  # repeat -> task -> logits per row: for calibration, not for JSON


GROUP_COLUMNS = ("race", "gender", "age")  # FairFace's columns; CSVs without them simply get no split


def _headlines(metrics):
    return {t: round(m.get(HEADLINE[t], float("nan")), 3) for t, m in metrics.items() if m.get("count")}


def split_validation(prepared, val_fraction, seed=0):
    """(train rows, validation rows): one stratified fold of size ~``val_fraction``, or no validation."""
    if not val_fraction:
        return prepared.rows, np.array([], dtype=np.int64)
    strata = prepared.table.strata()[prepared.rows]
    val_positions = repeated_splits(strata, max(2, round(1 / val_fraction)), 1, seed, prepared.groups)[0][3]
    mask = np.zeros(len(prepared.rows), bool)
    mask[val_positions] = True
    return prepared.rows[~mask], prepared.rows[mask]


def train_final(prepared, config, run_dir, group, val_fraction=0.0, seed=0, cv_report=None, fp16_weights=False,
                logit_offsets=None):
    """Train on the labelled faces (minus an optional validation part, for curves), save and export. Returns the
    paths. With an ensemble spec every member is trained (seeds ``config.seed + i``) and joined into one network.
    ``logit_offsets`` (task -> per-class offsets, from calibration.py) are set into the exported network."""
    os.makedirs(run_dir, exist_ok=True)
    train_rows, val_rows = split_validation(prepared, val_fraction, seed)
    spec = prepared.spec
    history, members = [], []
    for member in range(spec.ensemble):
        def log_epoch(record, member=member):
            history.append({"member": member, **record})
            logger.info("member %d epoch %d: loss %.4f train %s val %s", member, record["epoch"], record["loss"],
                        _headlines(record["train"]), _headlines(record.get("val", {})))
            write_json_atomic(os.path.join(run_dir, "history.json"), json_ready(history))

        member_config = seeded_member_config(config, member)
        model, trainable = prepared.new_model()
        fit(model, prepared.source, train_rows, member_config, val_rows=val_rows, trainable_trunk_params=trainable,
            on_epoch=log_epoch, flip_average=spec.flip_average)
        members.append(model)
    final = deployable(members[0]) if len(members) == 1 else ensemble_of(members, prepared.start)
    if logit_offsets:
        final.set_logit_offsets(logit_offsets)
    paths = {"run_dir": run_dir, "checkpoint": os.path.join(run_dir, "model.pt"),
             "onnx": os.path.join(run_dir, f"{group}.onnx"), "history": os.path.join(run_dir, "history.json"),
             "plot": os.path.join(run_dir, "metrics.png")}
    summary = {"group": group, "spec": spec.to_dict(), "train_config": config.to_dict(),
               "train_faces": int(len(train_rows)), "val_faces": int(len(val_rows)),
               "logit_offsets": {t: list(map(float, v)) for t, v in (logit_offsets or {}).items()}, "cv": cv_report}
    save_checkpoint(paths["checkpoint"], final, group, spec.backbone, spec.head, spec.head_options,
                    extra=json_ready({k: v for k, v in summary.items() if k != "cv"}), input_size=prepared.input_size,
                    flip_average=spec.flip_average)
    plot_history([r for r in history if r["member"] == 0], paths["plot"],
                 f"{group}: {spec.backbone} {spec.head}, last {spec.train_stages} stages")
    summary["export_check"] = export_and_verify(final, paths["onnx"], fp16_weights, prepared.input_size,
                                                spec.flip_average)
    write_json_atomic(os.path.join(run_dir, "summary.json"), json_ready(summary))
    return paths
