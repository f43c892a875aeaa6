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


class EnsembleTrunk(nn.Module):
    """Members trained from one pristine backbone whose first ``shared_stages`` stages stayed frozen: those run
    once, each member's own last stages run on their output, and the pooled features of all members come out side
    by side (a merged linear head then averages the members' logits, see ``ensemble_of``). ``shared_stages`` 0:
    nothing shared (full fine-tunes)."""

    def __init__(self, backbones, shared_stages):
        super().__init__()
        self.members = nn.ModuleList(backbones)
        self.shared_stages = int(shared_stages)
        self.feature_dim = sum(b.feature_dim for b in backbones)
        self.input_downsample = backbones[0].input_downsample
        self.input_window = backbones[0].input_window

    def forward(self, x):
        if self.shared_stages:
            shared = self.members[0].forward_stages(x, 0, self.shared_stages)
            maps = [member.forward_stages(shared, self.shared_stages) for member in self.members]
        else:
            maps = [member.forward_stages(x) for member in self.members]
        return torch.cat([pool_features(m) for m in maps], dim=1)


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
                     input_window=None, ensemble=1, shared_stages=0, **head_options):
    """A full network (backbone + heads) of one task group (``tasks`` default: the group's main tasks);
    ``ensemble`` > 1: that many members on an ``EnsembleTrunk`` sharing their first ``shared_stages`` stages."""
    backbones = [build_backbone(backbone_name, weights, input_downsample, input_window) for _ in range(ensemble)]
    trunk = backbones[0] if ensemble == 1 else EnsembleTrunk(backbones, shared_stages)
    return MultiHeadModel(trunk, build_heads(tasks or GROUP_TASKS[group], trunk.feature_dim, head_kind,
                                             **head_options))


def ensemble_of(members, shared_stages):
    """One network that averages the logits of ``members`` (MultiHeadModels with linear heads, trained from the
    same pristine backbone with its first ``shared_stages`` stages frozen): an ``EnsembleTrunk`` and, per task,
    one linear head on the joined features holding every member's weights / N and the mean bias, which equals
    the mean of the members' logits (dropout is off at inference)."""
    backbones = [m.trunk.backbone if isinstance(m.trunk, BackboneTail) else m.trunk for m in members]
    def shared_tensors(backbone):
        return [t for stage in backbone.stages()[:shared_stages] for t in stage.state_dict().values()]

    reference = shared_tensors(backbones[0])
    if any(not all(map(torch.equal, reference, shared_tensors(other))) for other in backbones[1:]):
        raise ValueError("ensemble members differ in the stages they should share")
    trunk = EnsembleTrunk(backbones, shared_stages)
    heads = {}
    for task in members[0].heads:
        linears = [m.heads[task][-1] for m in members]
        if any(len(m.heads[task]) != 2 or not isinstance(layer, nn.Linear) for m, layer in zip(members, linears)):
            raise ValueError("only linear heads can be merged into one ensemble network")
        head = build_head("linear", trunk.feature_dim, linears[0].out_features)
        with torch.no_grad():
            head[-1].weight.copy_(torch.cat([layer.weight for layer in linears], dim=1) / len(members))
            head[-1].bias.copy_(torch.stack([layer.bias for layer in linears]).mean(dim=0))
        heads[task] = head
    return MultiHeadModel(trunk, heads).eval()


class ExportModel(nn.Module):
    """The deployed form: one input, outputs in task order, multi-label tasks as sigmoid probabilities.
    ``flip_average``: every crop is also read mirrored (one pass over a batch twice the size) and each task's
    logits are the mean of the two, before the sigmoid; only for face-level labels, which a mirror keeps."""

    def __init__(self, model, flip_average=False):
        super().__init__()
        self.model = model
        self.tasks = tuple(model.heads.keys())
        self.flip_average = flip_average

    def forward(self, x):
        if self.flip_average:
            count = x.shape[0]
            both = self.model(torch.cat([x, torch.flip(x, dims=[3])]))
            outputs = {t: (logits[:count] + logits[count:]) / 2 for t, logits in both.items()}
        else:
            outputs = self.model(x)
        return tuple(torch.sigmoid(outputs[t]) if t in SIGMOID_OUTPUTS else outputs[t] for t in self.tasks)


def save_checkpoint(path, model, group, backbone_name, head_kind, head_options, extra=None, input_size=256,
                    flip_average=False):
    torch.save({"format": CHECKPOINT_FORMAT, "group": group, "backbone": backbone_name, "head": head_kind,
                "head_options": dict(head_options), "tasks": list(model.heads.keys()), "flip_average": flip_average,
                "input_downsample": int(getattr(model.trunk, "input_downsample", 1)), "input_size": int(input_size),
                "input_window": getattr(model.trunk, "input_window", None),
                "ensemble": len(model.trunk.members) if isinstance(model.trunk, EnsembleTrunk) else 1,
                "shared_stages": getattr(model.trunk, "shared_stages", 0),
                "state_dict": model.state_dict(), "extra": extra or {}}, path)


def load_checkpoint(path):
    """(model in eval mode, checkpoint dict) from a file written by ``save_checkpoint``."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    model = build_classifier(checkpoint["group"], checkpoint["backbone"], checkpoint["head"], weights=None,
                             tasks=checkpoint.get("tasks"), input_downsample=checkpoint.get("input_downsample", 1),
                             input_window=checkpoint.get("input_window"), ensemble=checkpoint.get("ensemble", 1),
                             shared_stages=checkpoint.get("shared_stages", 0), **checkpoint["head_options"])
    state = dict(checkpoint["state_dict"])
    for task in model.heads:  # checkpoints from before the logit offsets existed
        state.setdefault(f"offset_{task}", torch.zeros(len(CLASS_NAMES[task])))
    model.load_state_dict(state, strict=True)
    return model.eval(), checkpoint
