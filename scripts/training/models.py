"""Classifier networks: a trunk (backbone, backbone tail, or nothing for cached features) and one head per task.

Task groups, one network each: "eyes" (eyelids + eyelashes heads on a shared backbone, from the eye band crop) and
"facial_hair" (one multi-label head, from the face crop). Heads return raw logits; ``ExportModel`` adds the
sigmoid of multi-label tasks and fixes the output order for ONNX.
"""
import torch
from torch import nn

from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, EYELASHES, EYELIDS, FACIAL_HAIR, PER_EYE_EYELID, SIGMOID_OUTPUTS)
from scripts.training.backbones import build_backbone, build_head, pool_features

GROUP_TASKS = {"eyes": (EYELIDS, EYELASHES), "facial_hair": (FACIAL_HAIR,), "per_eye": (PER_EYE_EYELID,)}
CHECKPOINT_FORMAT = "ax_facial_features_training/1"


class MultiHeadModel(nn.Module):
    """``trunk`` -> pooled features -> {task: logits + that task's logit offsets}. The offsets (buffers, zero
    while training) hold the decision calibration chosen by cross-validation (scripts/training/calibration.py)."""

    def __init__(self, trunk, heads):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)
        for task, head in heads.items():
            self.register_buffer(f"offset_{task}", torch.zeros(len(CLASS_NAMES[task])))

    def logit_offsets(self, task):
        return getattr(self, f"offset_{task}")

    def set_logit_offsets(self, offsets):
        for task, values in offsets.items():
            self.logit_offsets(task).copy_(torch.as_tensor(values, dtype=torch.float32))

    def forward(self, x):
        features = self.trunk(x)
        return {task: head(features) + self.logit_offsets(task) for task, head in self.heads.items()}


class BackboneTail(nn.Module):
    """The last stages of a backbone (from ``start``) plus pooling: the trunk when the activations before
    ``start`` are cached. Shares its modules with the backbone."""

    def __init__(self, backbone, start):
        super().__init__()
        self.backbone = backbone
        self.start = start

    def forward(self, x):
        return pool_features(self.backbone.forward_stages(x, self.start))


def build_heads(tasks, feature_dim, head_kind, **head_options):
    return {task: build_head(head_kind, feature_dim, len(CLASS_NAMES[task]), **head_options) for task in tasks}


def build_classifier(group, backbone_name, head_kind, weights="imagenet", tasks=None, input_downsample=1,
                     input_window=None, **head_options):
    """A full network (backbone + heads) of one task group (``tasks`` default: the group's main tasks)."""
    backbone = build_backbone(backbone_name, weights, input_downsample, input_window)
    return MultiHeadModel(backbone, build_heads(tasks or GROUP_TASKS[group], backbone.feature_dim, head_kind,
                                                **head_options))


class ExportModel(nn.Module):
    """The deployed form: one input, outputs in task order, multi-label tasks as sigmoid probabilities."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.tasks = tuple(model.heads.keys())

    def forward(self, x):
        outputs = self.model(x)
        return tuple(torch.sigmoid(outputs[t]) if t in SIGMOID_OUTPUTS else outputs[t] for t in self.tasks)


def save_checkpoint(path, model, group, backbone_name, head_kind, head_options, extra=None, input_size=256):
    torch.save({"format": CHECKPOINT_FORMAT, "group": group, "backbone": backbone_name, "head": head_kind,
                "head_options": dict(head_options), "tasks": list(model.heads.keys()),
                "input_downsample": int(getattr(model.trunk, "input_downsample", 1)), "input_size": int(input_size),
                "input_window": getattr(model.trunk, "input_window", None),
                "state_dict": model.state_dict(), "extra": extra or {}}, path)


def load_checkpoint(path):
    """(model in eval mode, checkpoint dict) from a file written by ``save_checkpoint``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    model = build_classifier(checkpoint["group"], checkpoint["backbone"], checkpoint["head"], weights=None,
                             tasks=checkpoint.get("tasks"), input_downsample=checkpoint.get("input_downsample", 1),
                             input_window=checkpoint.get("input_window"),
                             **checkpoint["head_options"])
    state = dict(checkpoint["state_dict"])
    for task in model.heads:  # checkpoints from before the logit offsets existed
        state.setdefault(f"offset_{task}", torch.zeros(len(CLASS_NAMES[task])))
    model.load_state_dict(state, strict=True)
    return model.eval(), checkpoint
