"""Views of cached crops pushed through a frozen backbone (prefix): pooled features for fast model selection, or
the activations before the last K stages for last-block fine-tuning.

Views per face: [plain, plain flipped, then ``num_augmented`` augmented crops (every other one flipped)]; the
flip flags come back with the arrays so the targets can be mirrored (``trainer.TargetBank``).
"""
import hashlib
import logging
import os
import time

import numpy as np
import torch

from face_recognition.ax_facial_features import crops
from scripts.training import augment
from scripts.training.backbones import build_backbone, default_weights_path
from util.file_utils import atomic_output, sha256_of_file
from util.image_utils import imread

logger = logging.getLogger(__name__)


def row_kinds_array(kinds, count):
    """One crop kind per row: ``kinds`` is a kind or a sequence of kinds (per-eye rows mix the two eyes)."""
    return np.full(count, kinds, dtype=object) if isinstance(kinds, str) else np.asarray(kinds, dtype=object)


def compute_views(forward, cache, kinds, cache_rows, num_augmented=0, seed=0, dtype=np.float32, rows_per_batch=16,
                  augment_config=augment.AugmentConfig()):
    """``forward`` (a function of a preprocessed batch) applied to every view of each cache row, cut as its crop
    kind (``kinds``: one kind, or one per row). Returns (array (len(cache_rows), V, ...) of ``dtype``, flips (V,))."""
    kinds = row_kinds_array(kinds, len(cache_rows))
    plain = {kind: cache.crops(kind) for kind in set(kinds)}
    rng = np.random.default_rng(seed)
    out, started = None, time.time()
    with torch.no_grad():
        for start in range(0, len(cache_rows), rows_per_batch):
            batch_rows = cache_rows[start:start + rows_per_batch]
            images = []
            for row, kind in zip(batch_rows, kinds[start:start + rows_per_batch]):
                # The original image is only read when augmented views are asked for.
                source = imread(cache.image_path(row)) if num_augmented else None
                images += augment.crop_views(source, cache.landmarks[row], kind, np.asarray(plain[kind][row]),
                                             num_augmented, rng, augment_config)
            result = forward(torch.from_numpy(crops.preprocess(images))).numpy().astype(dtype)
            result = result.reshape(len(batch_rows), -1, *result.shape[1:])
            if out is None:
                out = np.empty((len(cache_rows),) + result.shape[1:], dtype=dtype)
            out[start:start + len(batch_rows)] = result
            if (start // rows_per_batch) % 25 == 0:
                logger.info("views %s: %d/%d rows, %.0f s", "+".join(sorted(set(kinds))), start + len(batch_rows),
                            len(cache_rows), time.time() - started)
    return out, augment.view_flips(num_augmented)


def weights_tag(backbone_name, weights):
    path = default_weights_path(backbone_name) if weights == "imagenet" else weights
    return "random" if path is None else sha256_of_file(path)[:12]


def cached_array(path, compute):
    """``np.load(path)`` when present, else ``compute()`` saved atomically to ``path``."""
    if os.path.isfile(path):
        return np.load(path)
    array = compute()
    with atomic_output(path) as tmp:
        np.save(tmp, array)
    return array


def views_path(cache, backbone_name, weights, kinds, cache_rows, detail):
    """File for views of ``cache_rows`` in ``<crop cache>/features/``, named by everything they depend on."""
    kinds = row_kinds_array(kinds, len(cache_rows))
    digest = hashlib.sha256(np.asarray(cache_rows, dtype=np.int64).tobytes() + detail.encode()
                            + "/".join(kinds).encode()).hexdigest()[:12]
    return os.path.join(cache.path, "features",
                        f"{backbone_name}-{weights_tag(backbone_name, weights)}-{'+'.join(sorted(set(kinds)))}-"
                        f"{digest}.npy")


def pooled_feature_views(backbone_name, cache, kinds, cache_rows, weights="imagenet"):
    """(N, 2, feature_dim) float32 pooled features of [plain, flipped] crops, cached on disk."""
    def compute():
        return compute_views(build_backbone(backbone_name, weights), cache, kinds, cache_rows)[0]

    return cached_array(views_path(cache, backbone_name, weights, kinds, cache_rows, "pooled"), compute)


def prefix_activation_views(backbone_name, backbone, stop, cache, kinds, cache_rows, num_augmented, seed=0,
                            weights="imagenet", augment_config=augment.AugmentConfig()):
    """Activations after stages[:stop] of every view, float16 (half the memory), cached on disk; and the flip
    flags of the views."""
    detail = f"prefix{stop}-aug{num_augmented}-seed{seed}-{augment_config}"
    if backbone.input_downsample > 1:
        detail += f"-down{backbone.input_downsample}"
    if backbone.input_window:
        detail += "-window" + "_".join(map(str, backbone.input_window))

    def compute():
        return compute_views(lambda x: backbone.forward_stages(x, 0, stop), cache, kinds, cache_rows, num_augmented,
                             seed, dtype=np.float16, augment_config=augment_config)[0]

    return cached_array(views_path(cache, backbone_name, weights, kinds, cache_rows, detail), compute), \
        augment.view_flips(num_augmented)
