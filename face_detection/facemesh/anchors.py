"""SSD anchors of the BlazeFace detectors, computed by the rules of mediapipe's SsdAnchorsCalculator.

Anchors are (x_center, y_center, width, height), normalised to the model input. Consecutive layers sharing a stride
share one feature map; each of its cells gets one anchor per (aspect ratio, scale) of those layers, plus one
interpolated-scale anchor per layer when ``interpolated_scale_aspect_ratio`` > 0.
"""
import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorOptions:
    input_size: int
    strides: tuple
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    aspect_ratios: tuple = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True  # width = height = 1: the regressors already carry the box size


# mediapipe's face_detection_short_range / face_detection_full_range graph options.
SHORT_RANGE = AnchorOptions(input_size=128, strides=(8, 16, 16, 16))
FULL_RANGE = AnchorOptions(input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0)


def _layer_scale(options, layer):
    if len(options.strides) == 1:
        return (options.min_scale + options.max_scale) / 2
    return options.min_scale + (options.max_scale - options.min_scale) * layer / (len(options.strides) - 1)


def _anchor_shapes(options, first_layer, last_layer):
    """(width, height) of the anchors of one feature map, built from layers first_layer..last_layer-1."""
    shapes = []
    for layer in range(first_layer, last_layer):
        scale = _layer_scale(options, layer)
        pairs = [(ratio, scale) for ratio in options.aspect_ratios]
        if options.interpolated_scale_aspect_ratio > 0:
            next_scale = 1.0 if layer == len(options.strides) - 1 else _layer_scale(options, layer + 1)
            pairs.append((options.interpolated_scale_aspect_ratio, math.sqrt(scale * next_scale)))
        shapes += [(s * math.sqrt(r), s / math.sqrt(r)) for r, s in pairs]
    return shapes


@functools.lru_cache(maxsize=None)
def generate_anchors(options):
    """(N, 4) float32 anchors (x_center, y_center, w, h), computed once per options and read-only."""
    anchors = []
    layer = 0
    while layer < len(options.strides):
        stride = options.strides[layer]
        last = layer
        while last < len(options.strides) and options.strides[last] == stride:
            last += 1
        shapes = _anchor_shapes(options, layer, last)
        cells = math.ceil(options.input_size / stride)
        for y in range(cells):
            for x in range(cells):
                center = ((x + options.anchor_offset) / cells, (y + options.anchor_offset) / cells)
                for width, height in shapes:
                    size = (1.0, 1.0) if options.fixed_anchor_size else (width, height)
                    anchors.append(center + size)
        layer = last
    result = np.array(anchors, dtype=np.float32)
    result.setflags(write=False)
    return result
