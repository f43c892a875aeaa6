"""Classifier networks: a trunk (backbone, backbone tail, or nothing for cached features) and one head per task.

Task groups, one network each: "eyes" (eyelids + eyelashes heads on a shared backbone, from the eye band crop) and
"facial_hair" (one multi-label head, from the face crop). Heads return raw logits; ``ExportModel`` adds the
sigmoid of multi-label tasks and fixes the output order for ONNX.
"""
import torch
from torch import nn

from face_recognition.ax_facial_features.constants import (
    CLASS_NAMES, EYELASHES, EYELIDS, FACIAL_HAIR, MULTI_LABEL_TASKS)
from scripts.training.backbones import build_backbone, build_head, pool_features

GROUP_TASKS = {"eyes": (EYELIDS, EYELASHES), "facial_hair": (FACIAL_HAIR,)}
CHECKPOINT_FORMAT = "ax_facial_features_training/1"


class MultiHeadModel(nn.Module):
    """``trunk`` -> pooled features -> {task: logits}."""

    def __init__(self, trunk, heads):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleDict(heads)

    def forward(self, x):
        features = self.trunk(x)
        return {task: head(features) for task, head in self.heads.items()}


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


def build_classifier(group, backbone_name, head_kind, weights="imagenet", **head_options):
    """A full network (backbone + heads) of one task group."""
    backbone = build_backbone(backbone_name, weights)
    return MultiHeadModel(backbone, build_heads(GROUP_TASKS[group], backbone.feature_dim, head_kind, **head_options))


class ExportModel(nn.Module):
    """The deployed form: one input, outputs in task order, multi-label tasks as sigmoid probabilities."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.tasks = tuple(model.heads.keys())

    def forward(self, x):
        outputs = self.model(x)
        return tuple(torch.sigmoid(outputs[t]) if t in MULTI_LABEL_TASKS else outputs[t] for t in self.tasks)


def save_checkpoint(path, model, group, backbone_name, head_kind, head_options, extra=None):
    torch.save({"format": CHECKPOINT_FORMAT, "group": group, "backbone": backbone_name, "head": head_kind,
                "head_options": dict(head_options), "state_dict": model.state_dict(), "extra": extra or {}}, path)


def load_checkpoint(path):
    """(model in eval mode, checkpoint dict) from a file written by ``save_checkpoint``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    model = build_classifier(checkpoint["group"], checkpoint["backbone"], checkpoint["head"], weights=None,
                             **checkpoint["head_options"])
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    return model.eval(), checkpoint
