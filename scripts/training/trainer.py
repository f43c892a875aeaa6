"""One training loop for every mode: heads on cached pooled features, the last backbone stages on cached
activations, or a full fine-tune on crops made on the fly.

A *source* yields batches (inputs, targets, masks) for table rows: ``ViewSource`` holds precomputed views
(view 0 = the plain crop, others flipped and/or augmented) and picks a random view per row when training;
``OnTheFlySource`` cuts augmented crops from the original images each time. Loss: masked multi-task sum, so a face
with only one of its task labels still trains that task. Class imbalance: inverse-frequency class weights in the
loss ("weights") or a class-balanced sampler ("sampler").
"""
import logging
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from face_recognition.ax_facial_features import crops
from face_recognition.ax_facial_features.constants import SIGMOID_OUTPUTS
from scripts.training import augment
from scripts.training.datasets import hard_labels
from scripts.training.metrics import HEADLINE, task_metrics
from util.image_utils import imread

logger = logging.getLogger(__name__)

BALANCE_MODES = ("weights", "sampler", "none")


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    trunk_lr_factor: float = 0.1  # backbone stages learn slower than the new heads
    weight_decay: float = 1e-4
    balance: str = "weights"
    class_weight_power: float = 1.0  # 1: fully balanced; 0.5: square-root tempered
    freeze_batchnorm: bool = True  # keep ImageNet BN statistics: small batches of a small dataset
    seed: int = 0

    def to_dict(self):
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Targets and sources


class TargetBank:
    """Targets of a label table and of its mirrored table, so a flipped view gets the swapped per-eye labels."""

    def __init__(self, table):
        self.tasks = table.tasks
        mirrored = table.flipped()
        self.targets = {t: np.stack([table.targets[t], mirrored.targets[t]]) for t in self.tasks}
        self.masks = {t: np.stack([table.masks[t], mirrored.masks[t]]) for t in self.tasks}

    def get(self, rows, flips):
        flips = np.asarray(flips, dtype=np.int64)
        targets = {t: torch.from_numpy(self.targets[t][flips, rows]) for t in self.tasks}
        masks = {t: torch.from_numpy(self.masks[t][flips, rows]) for t in self.tasks}
        return targets, masks

    def plain(self, task, rows):
        """(targets, mask) of the unflipped rows, numpy."""
        return self.targets[task][0, rows], self.masks[task][0, rows]


class ViewSource:
    """``inputs[i, v]``: view v of the table row ``rows[i]`` (any array shape, e.g. pooled features or cached
    activations); ``flips[v]`` tells whether view v is mirrored. View 0 must be the plain crop and view 1, where
    a flipped evaluation is asked for, the plain crop mirrored (as ``augment.view_flips`` lays them out)."""

    MIRRORED_VIEW = 1

    def __init__(self, rows, inputs, flips, bank):
        self.position = {int(r): i for i, r in enumerate(rows)}
        self.inputs = inputs
        self.flips = np.asarray(flips, dtype=bool)
        self.bank = bank
        assert not self.flips[0], "view 0 is the plain crop"

    def _batch(self, rows, views):
        positions = np.array([self.position[int(r)] for r in rows])
        x = torch.from_numpy(np.asarray(self.inputs[positions, views], dtype=np.float32))
        return (x, *self.bank.get(rows, self.flips[views]))

    def train_batch(self, rows, rng):
        return self._batch(rows, rng.integers(0, self.inputs.shape[1], len(rows)))

    def eval_batch(self, rows, mirrored=False):
        if mirrored and not (len(self.flips) > self.MIRRORED_VIEW and self.flips[self.MIRRORED_VIEW]):
            raise ValueError("these views hold no mirrored plain crop")
        return self._batch(rows, np.full(len(rows), self.MIRRORED_VIEW if mirrored else 0, dtype=np.int64))


class OnTheFlySource:
    """Full fine-tune: a fresh augmented crop of the original image per row and step (landmark jitter, colour,
    flip with label swap), preprocessed by the plugin; evaluation uses the cached plain crops."""

    def __init__(self, table, cache, kind, augment_config=augment.AugmentConfig()):
        self.table, self.cache, self.kind, self.config = table, cache, kind, augment_config
        self.cache_rows = cache.rows(table.images)
        self.plain = cache.crops(kind)
        self.bank = TargetBank(table)

    def train_batch(self, rows, rng):
        images, flips = [], rng.random(len(rows)) < 0.5
        for row, flip in zip(rows, flips):
            cache_row = self.cache_rows[row]
            crop = augment.augmented_crop(imread(self.cache.image_path(cache_row)),
                                          self.cache.landmarks[cache_row], self.kind, rng, self.config)
            images.append(augment.hflip(crop) if flip else crop)
        return (torch.from_numpy(crops.preprocess(images)), *self.bank.get(rows, flips))

    def eval_batch(self, rows, mirrored=False):
        images = [self.plain[self.cache_rows[row]] for row in rows]
        if mirrored:
            images = [augment.hflip(image) for image in images]
        return (torch.from_numpy(crops.preprocess(images)), *self.bank.get(rows, np.full(len(rows), mirrored)))


# ---------------------------------------------------------------------------------------------------------------
# Losses and balancing


def class_weights(targets, mask, power=1.0):
    """Inverse-frequency weights N / (C * n_c) raised to ``power``, normalised to mean 1 (absent class: weight 1)."""
    counts = targets[mask].sum(axis=0)
    present = counts > 0
    weights = np.ones(len(counts))
    weights[present] = (counts[present].sum() / (present.sum() * counts[present])) ** power
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def soft_cross_entropy(logits, targets, weights=None):
    """Cross entropy against probability rows; with class weights, the mean is weighted as in
    ``F.cross_entropy(weight=...)``: row weight = target . class weights."""
    per_row = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    row_weights = targets @ weights if weights is not None else torch.ones_like(per_row)
    return (row_weights * per_row).sum() / row_weights.sum().clamp_min(1e-12)


def task_loss(task, logits, targets, mask, weights=None):
    """Loss of one task on its labelled rows (zero, still differentiable, when none in the batch)."""
    if not mask.any():
        return logits.sum() * 0.0
    logits, targets = logits[mask], targets[mask]
    if task in SIGMOID_OUTPUTS:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return soft_cross_entropy(logits, targets, weights)


def multitask_loss(outputs, targets, masks, weights):
    """Sum over tasks of each task's masked loss."""
    return sum(task_loss(t, outputs[t], targets[t], masks[t], weights.get(t)) for t in outputs)


def balanced_sampling_probabilities(bank, rows, tasks, power=1.0):
    """Per-row sampling probability: the largest class weight among the row's single-label tasks."""
    scores = np.ones(len(rows))
    for task in tasks:
        if task in SIGMOID_OUTPUTS:
            continue
        targets, mask = bank.plain(task, rows)
        weights = class_weights(targets, mask, power).numpy()
        scores = np.maximum(scores, np.where(mask, targets @ weights, 0.0))
    return scores / scores.sum()


# ---------------------------------------------------------------------------------------------------------------
# Loop


def freeze_batchnorm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def predict(model, source, rows, batch_size=128, flip_average=False):
    """{task: logits (len(rows), C)} on the plain view, numpy; ``flip_average``: the mean of the logits of the
    plain crop and of its mirror image (what an export with ``flip_average`` computes; face-level labels only)."""
    model.eval()
    collected = {}
    with torch.no_grad():
        for mirrored in (False, True) if flip_average else (False,):
            for start in range(0, len(rows), batch_size):
                x, _, _ = source.eval_batch(rows[start:start + batch_size], mirrored)
                for task, logits in model(x).items():
                    collected.setdefault(task, {}).setdefault(mirrored, []).append(logits.numpy())
    return {task: np.mean([np.concatenate(parts) for parts in views.values()], axis=0)
            for task, views in collected.items()}


def scored_rows(task, targets, mask):
    """(keep mask, labels of the kept rows) scored by the metrics: labelled rows, and for single-label tasks only
    the hard (one-hot) ones."""
    if task in SIGMOID_OUTPUTS:
        return mask, targets[mask]
    labels = hard_labels(targets, mask)
    return labels >= 0, labels[labels >= 0]


def metrics_from_logits(logits, targets, masks):
    """{task: metrics} over the rows scored for each task (see ``scored_rows``)."""
    results = {}
    for task, task_logits in logits.items():
        keep, labels = scored_rows(task, targets[task], masks[task])
        results[task] = task_metrics(task, task_logits[keep], labels) if keep.any() else {"count": 0}
    return results


def score(source, rows, logits):
    """{task: metrics} of ``logits`` (one row each of ``rows``) against the rows' plain targets."""
    plain = {t: source.bank.plain(t, rows) for t in logits}
    return metrics_from_logits(logits, {t: v[0] for t, v in plain.items()}, {t: v[1] for t, v in plain.items()})


def evaluate(model, source, rows, flip_average=False):
    """(metrics, logits) on the plain views of ``rows`` (``flip_average``: see ``predict``)."""
    logits = predict(model, source, rows, flip_average=flip_average)
    return score(source, rows, logits), logits


def headline(metrics):
    """Mean of the tasks' headline metrics (None values skipped)."""
    values = [m.get(HEADLINE[t]) for t, m in metrics.items()]
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _optimizer(model, trainable_trunk_params, config):
    for p in model.trunk.parameters():
        p.requires_grad_(False)
    for p in trainable_trunk_params:
        p.requires_grad_(True)
    groups = [{"params": list(model.heads.parameters()), "lr": config.lr}]
    if trainable_trunk_params:
        groups.append({"params": list(trainable_trunk_params), "lr": config.lr * config.trunk_lr_factor})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def seeded_member_config(config, member):
    """Training config of ensemble member ``member`` (seed ``config.seed + member``), with torch's generator set
    to that seed: call it right before building the member, so its new heads' initial weights are reproducible."""
    config = replace(config, seed=config.seed + member)
    torch.manual_seed(config.seed)
    return config


def fit(model, source, train_rows, config, val_rows=None, trainable_trunk_params=(), on_epoch=None,
        flip_average=False):
    """Train ``model`` (a MultiHeadModel) on ``train_rows``; returns the per-epoch history (train metrics on the
    sampled training views, validation metrics on plain views, flip-averaged with ``flip_average``).
    ``on_epoch(record)`` is called after each epoch."""
    if config.balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tasks = tuple(model.heads.keys())
    train_rows = np.asarray(train_rows)
    weights = {}
    if config.balance == "weights":
        weights = {t: class_weights(*source.bank.plain(t, train_rows), config.class_weight_power)
                   for t in tasks if t not in SIGMOID_OUTPUTS}
    sampling = (balanced_sampling_probabilities(source.bank, train_rows, tasks, config.class_weight_power)
                if config.balance == "sampler" else None)
    optimizer = _optimizer(model, list(trainable_trunk_params), config)
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        if config.freeze_batchnorm:
            freeze_batchnorm(model)
        order = (rng.choice(train_rows, len(train_rows), p=sampling) if sampling is not None
                 else rng.permutation(train_rows))
        seen = {"logits": {t: [] for t in tasks}, "targets": {t: [] for t in tasks}, "masks": {t: [] for t in tasks}}
        total_loss = 0.0
        for start in range(0, len(order), config.batch_size):
            x, targets, masks = source.train_batch(order[start:start + config.batch_size], rng)
            outputs = model(x)
            loss = multitask_loss(outputs, targets, masks, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(x)
            for t in tasks:
                seen["logits"][t].append(outputs[t].detach().numpy())
                seen["targets"][t].append(targets[t].numpy())
                seen["masks"][t].append(masks[t].numpy())
        joined = {k: {t: np.concatenate(v[t]) for t in tasks} for k, v in seen.items()}
        record = {"epoch": epoch, "loss": total_loss / len(order),
                  "train": metrics_from_logits(joined["logits"], joined["targets"], joined["masks"])}
        if val_rows is not None and len(val_rows):
            record["val"] = evaluate(model, source, np.asarray(val_rows), flip_average)[0]
        history.append(record)
        if on_epoch:
            on_epoch(record)
    model.eval()
    return history
