"""Repeated stratified k-fold cross-validation with fixed seeds, and its summary with 95 % intervals."""
import math

import numpy as np

from scripts.training.metrics import (HEADLINE, UNBOUNDED, bootstrap_interval, cv_interval, fold_interval,
                                      task_metrics)
from scripts.training.trainer import (evaluate, fit, metrics_from_logits, predict, score, scored_rows,
                                      seeded_member_config)


def stratified_kfold(strata, n_splits, seed):
    """Test positions of each fold: every stratum is shuffled and dealt round-robin over the folds, starting at
    the fold after the previous stratum's last one so fold sizes stay within one of each other."""
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(n_splits)]
    next_fold = 0
    for value in sorted(set(strata)):
        members = rng.permutation(np.flatnonzero(np.asarray(strata) == value))
        for i, position in enumerate(members):
            folds[(next_fold + i) % n_splits].append(position)
        next_fold = (next_fold + len(members)) % n_splits
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def grouped_stratified_kfold(strata, groups, n_splits, seed):
    """As ``stratified_kfold``, but rows of one group (e.g. both eyes of a photo) always share a fold; a group's
    stratum is the combination of its rows' strata."""
    groups, strata = np.asarray(groups), np.asarray(strata).astype(str)
    names, inverse = np.unique(groups, return_inverse=True)
    group_strata = ["|".join(sorted(strata[inverse == g])) for g in range(len(names))]
    return [np.sort(np.flatnonzero(np.isin(inverse, fold))) for fold in stratified_kfold(group_strata, n_splits,
                                                                                          seed)]


def repeated_splits(strata, n_splits=5, n_repeats=3, seed=0, groups=None):
    """[(repeat, fold, train positions, test positions)]; repeat r uses seed ``seed + r``. ``groups``: rows with
    the same value stay in one fold (None, or all distinct: plain stratified folds)."""
    everything = np.arange(len(strata))
    grouped = groups is not None and len(set(np.asarray(groups).tolist())) < len(strata)
    splits = []
    for repeat in range(n_repeats):
        folds = (grouped_stratified_kfold(strata, groups, n_splits, seed + repeat) if grouped
                 else stratified_kfold(strata, n_splits, seed + repeat))
        for fold, test in enumerate(folds):
            splits.append((repeat, fold, np.setdiff1d(everything, test), test))
    return splits


def cross_validate(build_model, source, rows, strata, config, n_splits=5, n_repeats=3, seed=0, log_test_curves=False,
                   on_fold=None, groups=None, flip_average=False, members=1):
    """Train a fresh model per fold on the other folds (fixed epochs: no selection on the test fold) and score
    it on the test fold. ``build_model()`` -> (model, trainable trunk params); its new weights are drawn after
    ``torch.manual_seed`` of the training seed, so a run is reproducible. ``log_test_curves`` keeps the per-epoch
    test-fold metrics in the record ("history"), for plots only. Returns the fold records and the out-of-fold
    logits of each repeat. ``groups`` (per row): rows sharing a value stay in one fold. ``flip_average``: scored
    on the mean logits of each test crop and its mirror image. ``members`` > 1: an ensemble per fold, member i
    trained with seed ``config.seed + i``, scored on the mean of their logits; with either option the record also
    holds "single_model_metrics", member 0 on plain crops, for a paired comparison."""
    rows = np.asarray(rows)
    records, out_of_fold = [], {}
    for repeat, fold, train, test in repeated_splits(strata, n_splits, n_repeats, seed, groups):
        member_logits, history, single = [], None, None
        for member in range(members):
            member_config = seeded_member_config(config, member)
            model, trainable = build_model()
            curves = fit(model, source, rows[train], member_config, trainable_trunk_params=trainable,
                         val_rows=rows[test] if log_test_curves and member == 0 else None, flip_average=flip_average)
            member_logits.append(predict(model, source, rows[test], flip_average=flip_average))
            if member == 0:
                history = curves
                if members > 1 or flip_average:
                    single = evaluate(model, source, rows[test])[0]
        logits = {t: np.mean([m[t] for m in member_logits], axis=0) for t in member_logits[0]}
        records.append({"repeat": repeat, "fold": fold, "test_count": int(len(test)),
                        "metrics": score(source, rows[test], logits)})
        if single is not None:
            records[-1]["single_model_metrics"] = single
        if log_test_curves:
            records[-1]["history"] = history
        for task, task_logits in logits.items():
            store = out_of_fold.setdefault(repeat, {}).setdefault(task, np.zeros((len(rows),) + task_logits.shape[1:]))
            store[test] = task_logits
        if on_fold:
            on_fold(records[-1])
    return records, out_of_fold


def summarise_folds(records, n_splits, key="metrics"):
    """{task: {metric: {mean, low, high, std}}} over folds (each record's ``key`` metrics), corrected-t 95 %
    intervals."""
    summary = {}
    tasks = records[0][key].keys()
    for task in tasks:
        names = [k for k, v in records[0][key][task].items() if k != "count"]
        summary[task] = {}
        for name in names:
            bounds = (-math.inf, math.inf) if name in UNBOUNDED else (0.0, 1.0)
            mean, low, high, std = cv_interval([r[key][task].get(name) for r in records], 1 / n_splits,
                                               bounds=bounds)
            summary[task][name] = {"mean": mean, "low": low, "high": high, "std": std}
    return summary


def paired_headline_gain(records, n_splits):
    """{task: {mean, low, high, std, per_fold}}: headline metric of the configured model minus the single model
    on plain crops, fold by fold (records from ``cross_validate`` with ``flip_average`` or ``members`` > 1)."""
    gains = {}
    for task in records[0]["metrics"]:
        differences = [r["metrics"][task].get(HEADLINE[task], math.nan)
                       - r["single_model_metrics"][task].get(HEADLINE[task], math.nan) for r in records]
        gains[task] = {"metric": HEADLINE[task], **fold_interval(differences, n_splits, bounds=(-1.0, 1.0))}
    return gains


def pooled_out_of_fold(out_of_fold, bank, rows, seed=0, n_resamples=1000):
    """Headline metric of the pooled out-of-fold predictions of each repeat, with a bootstrap 95 % interval
    for repeat 0 (a second view of the uncertainty, over samples rather than folds)."""
    rows = np.asarray(rows)
    result = {}
    for repeat, per_task in sorted(out_of_fold.items()):
        targets = {t: bank.plain(t, rows)[0] for t in per_task}
        masks = {t: bank.plain(t, rows)[1] for t in per_task}
        metrics = metrics_from_logits(per_task, targets, masks)
        for task, task_metric in metrics.items():
            entry = result.setdefault(task, {"metric": HEADLINE[task], "per_repeat": []})
            entry["per_repeat"].append(task_metric.get(HEADLINE[task]))
            if repeat == 0:
                entry["bootstrap_repeat0"] = _bootstrap_headline(task, per_task[task], targets[task], masks[task],
                                                                 seed, n_resamples)
    return result


def _bootstrap_headline(task, logits, targets, mask, seed, n_resamples):
    keep, labels = scored_rows(task, targets, mask)
    estimate, low, high = bootstrap_interval(lambda lg, lb: task_metrics(task, lg, lb)[HEADLINE[task]],
                                             [logits[keep], labels], n_resamples=n_resamples, seed=seed)
    return {"estimate": estimate, "low": low, "high": high}


def per_group_out_of_fold(out_of_fold, bank, rows, group_values, seed=0, n_resamples=500):
    """Metrics of repeat 0's pooled out-of-fold predictions split by each group column (e.g. FairFace race,
    gender, age): ``group_values`` maps a column name to the value of each of ``rows``. Each group gets the
    task metrics and a bootstrap 95 % interval of the headline metric; groups without scored rows are skipped."""
    rows = np.asarray(rows)
    per_task = out_of_fold.get(0, {})
    report = {}
    for column, values in group_values.items():
        values = np.asarray(values)
        for value in sorted(set(values.tolist())):
            members = values == value
            for task, logits in per_task.items():
                targets, mask = bank.plain(task, rows)
                group_mask = mask & members
                keep, labels = scored_rows(task, targets, group_mask)
                if not keep.any():
                    continue
                metrics = task_metrics(task, logits[keep], labels)
                if keep.sum() >= 2:
                    _, low, high = _bootstrap_headline(task, logits, targets, group_mask, seed, n_resamples)
                    metrics[f"{HEADLINE[task]}_ci95"] = [low, high]
                report.setdefault(task, {}).setdefault(column, {})[value] = metrics
    return report
