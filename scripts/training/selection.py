"""Fast model selection on frozen features: backbone x head, repeated stratified k-fold CV per task group.

Pooled features of the plain and flipped crops are extracted once per backbone (cached on disk); each fold trains
only the heads, on both views (the flipped view carries the mirrored labels), and scores the plain view of the
test fold. Report: JSON (every fold) and a markdown table of the headline metrics with 95 % intervals.
"""
import logging
import os

import numpy as np
from torch import nn

from face_recognition.ax_facial_features.constants import CLASS_NAMES
from scripts.training.cv import cross_validate, pooled_out_of_fold, summarise_folds
from scripts.training.augment import view_flips
from scripts.training.features import pooled_feature_views
from scripts.training.metrics import HEADLINE, json_ready
from scripts.training.models import MultiHeadModel, build_heads
from scripts.training.trainer import TargetBank, ViewSource
from util.file_utils import atomic_output, write_json_atomic

logger = logging.getLogger(__name__)


def trainable_rows(table, cache):
    """Labelled rows of ``table`` whose face was detected (the plugin cannot classify the others either)."""
    rows = table.labelled_rows()
    cache_rows = cache.rows(table.images[rows])
    found = (cache_rows >= 0) & cache.found[np.maximum(cache_rows, 0)]
    return rows[found], cache_rows[found]


def compare_heads_on_features(table, cache, backbone_names, head_kinds, config, n_splits=5, n_repeats=3, seed=0,
                              weights=None):
    """CV results, one per (backbone, head), for the task group of ``table``. ``weights``: backbone name ->
    weights file (default: the packaged ImageNet weights)."""
    weights = weights or {}
    rows, cache_rows = trainable_rows(table, cache)
    bank = TargetBank(table)
    strata, groups = table.strata()[rows], table.split_groups()[rows]
    results = []
    for backbone_name in backbone_names:
        features = pooled_feature_views(backbone_name, cache, table.row_kinds()[rows], cache_rows,
                                        weights.get(backbone_name, "imagenet"))
        source = ViewSource(rows, features, view_flips(0), bank)
        for head_kind in head_kinds:
            def build_model(head_kind=head_kind):
                heads = build_heads(table.tasks, features.shape[-1], head_kind)
                return MultiHeadModel(nn.Identity(), heads), []

            logger.info("CV %s / %s / %s: %d faces, %d x %d folds", type(table).__name__, backbone_name, head_kind,
                        len(rows), n_repeats, n_splits)
            records, out_of_fold = cross_validate(build_model, source, rows, strata, config, n_splits, n_repeats,
                                                  seed, groups=groups)
            results.append({"tasks": list(table.tasks), "backbone": backbone_name, "head": head_kind,
                            "faces": int(len(rows)), "summary": summarise_folds(records, n_splits),
                            "pooled_out_of_fold": pooled_out_of_fold(out_of_fold, bank, rows, seed),
                            "folds": records})
    return results


def markdown_table(results):
    """One line per task x backbone x head: headline mean [95 % CI], accuracy (or Hamming loss), pooled OOF."""
    lines = ["| task | backbone | head | faces | headline metric | CV mean [95% CI] | accuracy | "
             "pooled OOF (bootstrap 95% CI) |",
             "|---|---|---|---|---|---|---|---|"]
    for result in results:
        for task in result["tasks"]:
            metric = HEADLINE[task]
            cv = result["summary"][task][metric]
            other = result["summary"][task].get("accuracy") or result["summary"][task].get("hamming_loss")
            other_name = "accuracy" if "accuracy" in result["summary"][task] else "hamming loss"
            boot = result["pooled_out_of_fold"][task]["bootstrap_repeat0"]
            lines.append(f"| {task} | {result['backbone']} | {result['head']} | {result['faces']} | {metric} | "
                         f"{_fmt_interval(cv['mean'], cv['low'], cv['high'])} | "
                         f"{other_name} {other['mean']:.3f} | "
                         f"{_fmt_interval(boot['estimate'], boot['low'], boot['high'])} |")
    return "\n".join(lines) + "\n"


def _fmt_interval(mean, low, high):
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def write_report(results, folder, name, settings):
    """``<folder>/<name>.json`` (everything) and ``<folder>/<name>.md`` (the table)."""
    os.makedirs(folder, exist_ok=True)
    write_json_atomic(os.path.join(folder, f"{name}.json"), json_ready({"settings": settings, "results": results}))
    with atomic_output(os.path.join(folder, f"{name}.md")) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"# Frozen-feature model selection\n\nSettings: `{settings}`\n\n")
        f.write("CV mean over folds with Nadeau-Bengio corrected t intervals; pooled OOF = metric of the pooled "
                "out-of-fold predictions of repeat 0 with a percentile bootstrap interval.\n\n")
        f.write(markdown_table(results))
        f.write("\nClasses: " + "; ".join(f"{t}: {', '.join(c)}" for t, c in CLASS_NAMES.items()) + "\n")
    return os.path.join(folder, f"{name}.md")
