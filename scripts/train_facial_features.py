#!/usr/bin/env python3
"""Training toolkit CLI for the ax Facial Features classifiers (library: scripts/training/, guide: its README.md).

    python3 scripts/train_facial_features.py cache                      # Face Mesh + crops once per image
    python3 scripts/train_facial_features.py select                     # frozen-feature CV: backbone x head
    python3 scripts/train_facial_features.py finetune --group eyes      # CV estimate, then final model + ONNX
    python3 scripts/train_facial_features.py export --checkpoint RUN/model.pt --output eyes.onnx

Data: ``--dataset DIR`` holding images/ plus labels_eyes.csv and/or labels_facial_hair.csv (or explicit paths).
Holdout folders are refused. Outputs go under .cache/ (ignored by git).
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from scripts.training import crop_cache, datasets  # noqa: E402
from scripts.training.backbones import BACKBONES, HEADS  # noqa: E402
from scripts.training.trainer import BALANCE_MODES, TrainConfig  # noqa: E402
from util.errors import AxError  # noqa: E402

REPO_ROOT = crop_cache.REPO_ROOT
DEFAULT_DATASET = os.path.join(os.path.dirname(REPO_ROOT), "shared", "datasets", "fairface-facial-features")
DEFAULT_RUNS = os.path.join(REPO_ROOT, ".cache", "training_runs")
logger = logging.getLogger("train_facial_features")


def add_data_arguments(parser):
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="folder with images/ and the label CSVs")
    parser.add_argument("--images", default=None, help="image folder (default: DATASET/images)")
    parser.add_argument("--eyes-csv", default=None, help="eye labels (default: DATASET/labels_eyes.csv)")
    parser.add_argument("--facial-hair-csv", default=None, help="facial hair labels (default: "
                                                                "DATASET/labels_facial_hair.csv)")
    parser.add_argument("--hybrid", choices=datasets.HYBRID_POLICIES, default="exclude",
                        help="faces with one double and one single eyelid: excluded, or a [0.5, 0.5] target")
    parser.add_argument("--cache-root", default=crop_cache.DEFAULT_CACHE_ROOT, help="crop / feature cache folder")
    parser.add_argument("--resnet50-weights", default=None, help="ImageNet ResNet50 state dict (torchvision keys)")
    parser.add_argument("--unclear-heads", action="store_true",
                        help="add one '<task>_unclear' sigmoid head per task, trained on the annotators' unclear "
                             "labels (for the plugin's unclear gate)")


def add_train_arguments(parser, epochs, lr):
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--balance", choices=BALANCE_MODES, default="weights",
                        help="class imbalance: weighted loss, balanced sampler, or nothing")
    parser.add_argument("--class-weight-power", type=float, default=1.0, help="1 balanced, 0.5 tempered")
    parser.add_argument("--trunk-lr-factor", type=float, default=0.1,
                        help="learning rate of the trained backbone stages relative to the heads")
    parser.add_argument("--train-bn", action="store_true", help="update BatchNorm statistics (default: frozen)")
    parser.add_argument("--seed", type=int, default=0)


def add_fp16_argument(parser):
    parser.add_argument("--fp16-weights", action="store_true",
                        help="store large weights as float16 in the ONNX file (half the size; compute stays float32)")


def train_config(args):
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       balance=args.balance, class_weight_power=args.class_weight_power,
                       trunk_lr_factor=args.trunk_lr_factor,
                       freeze_batchnorm=not args.train_bn, seed=args.seed)


def load_tables(args):
    """{group: table} for every group whose CSV exists (all of them share one crop cache)."""
    paths = {"eyes": args.eyes_csv, "facial_hair": args.facial_hair_csv, "per_eye": args.eyes_csv}
    tables = {}
    for group in datasets.GROUPS:
        csv_path = paths[group] or os.path.join(args.dataset, datasets.DEFAULT_CSV[group])
        if os.path.isfile(csv_path):
            options = {"hybrid": args.hybrid} if group == "eyes" else {}
            options["unclear"] = getattr(args, "unclear_heads", False)
            tables[group] = datasets.load_group(group, args.dataset, csv_path, args.images, **options)
    if not tables:
        raise AxError(f"no label CSV found in {args.dataset}")
    return tables


def resnet_weights(args):
    return {"resnet50": args.resnet50_weights} if args.resnet50_weights else {}


def command_cache(args):
    tables = load_tables(args)
    cache = crop_cache.open_tables_cache(list(tables.values()), args.cache_root)
    missed = cache.meta["missed"]
    print(f"crop cache: {cache.path}\n{len(cache.names)} images, {len(missed)} without a detected face")
    return cache


def command_select(args):
    from scripts.training.selection import compare_heads_on_features, write_report

    if "resnet50" in args.backbones and not args.resnet50_weights:
        raise AxError("resnet50 needs --resnet50-weights (no ImageNet ResNet50 weights are packaged)")
    tables = load_tables(args)
    cache = crop_cache.open_tables_cache(list(tables.values()), args.cache_root)
    config = train_config(args)
    results = []
    for group in args.groups:
        results += compare_heads_on_features(tables[group], cache, args.backbones, args.heads, config, args.folds,
                                             args.repeats, args.seed, resnet_weights(args))
    settings = {"folds": args.folds, "repeats": args.repeats, "train": config.to_dict(), "hybrid": args.hybrid,
                "missed_faces": len(cache.meta["missed"])}
    path = write_report(results, args.out, "frozen_selection", settings)
    with open(path, encoding="utf-8") as f:
        print(f.read())


def command_finetune(args):
    from scripts.training.finetune import FinetuneSpec, Prepared, cross_validate_finetune, train_final
    from scripts.training.metrics import json_ready
    from scripts.training.plots import plot_history
    from util.file_utils import write_json_atomic

    tables = load_tables(args)
    cache = crop_cache.open_tables_cache(list(tables.values()), args.cache_root)
    weights = args.resnet50_weights if args.backbone == "resnet50" else "imagenet"
    if weights is None:
        raise AxError("resnet50 needs --resnet50-weights (no ImageNet ResNet50 weights are packaged)")
    spec = FinetuneSpec(backbone=args.backbone, head=args.head, train_stages=args.train_stages,
                        augmented_views=args.augmented_views, weights=weights, input_downsample=args.input_downsample,
                        input_window=tuple(args.input_window) if args.input_window else None,
                        flip_average=args.flip_average, ensemble=args.ensemble)
    config = train_config(args)
    run_dir = os.path.join(args.out, f"{args.group}-{args.backbone}-{args.head}-k{args.train_stages}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(run_dir, exist_ok=True)
    prepared = Prepared(tables[args.group], cache, spec, args.seed)
    cv_report, offsets = None, None
    if args.cv_folds:
        cv_report = cross_validate_finetune(prepared, config, args.cv_folds, args.cv_repeats, args.seed)
        cv_report["settings"] = {"spec": spec.to_dict(), "train": config.to_dict(), "hybrid": args.hybrid,
                                 "unclear_heads": args.unclear_heads}
        out_of_fold = save_out_of_fold(prepared, cv_report.pop("out_of_fold")[0], args.cv_folds, args.seed, run_dir)
        if args.calibrate:
            cv_report["calibration"] = calibrate_out_of_fold(out_of_fold, args.cv_folds)
            offsets = {task: entry["offsets"] for task, entry in cv_report["calibration"].items()}
        write_json_atomic(os.path.join(run_dir, "cv_report.json"), json_ready(cv_report))
        plot_history(cv_report["folds"][0]["history"], os.path.join(run_dir, "cv_fold0_metrics.png"),
                     f"{args.group} CV fold 0 (val = test fold, logged only)")
        print_summary(cv_report["summary"])
        for task, gain in cv_report.get("gain_over_single_model_plain", {}).items():
            print(f"{task}: {gain['metric']} minus one model on plain crops {gain['mean']:+.3f} "
                  f"[{gain['low']:+.3f}, {gain['high']:+.3f}] (paired over folds)")
        print_calibration(cv_report.get("calibration", {}))
    if not args.no_final:
        paths = train_final(prepared, config, run_dir, args.group, args.val_fraction, args.seed, cv_report,
                            args.fp16_weights, offsets)
        for name, path in paths.items():
            print(f"{name}: {path}")


def save_out_of_fold(prepared, logits, n_splits, seed, run_dir):
    """Repeat 0's out-of-fold logits with each row's test fold, targets and masks -> cv_out_of_fold.npz (for the
    calibration and the unclear gates); returns the arrays as a dict."""
    import numpy as np

    from scripts.training.cv import repeated_splits

    table, rows = prepared.table, prepared.rows
    fold_of_row = np.full(len(rows), -1)
    for _, fold, _, test in repeated_splits(table.strata()[rows], n_splits, 1, seed, prepared.groups):
        fold_of_row[test] = fold
    arrays = {"rows": rows, "fold": fold_of_row, "images": np.asarray(table.images)[rows].astype(str),
              "kinds": table.row_kinds()[rows].astype(str)}
    for task, task_logits in logits.items():
        arrays[f"logits/{task}"] = task_logits
        arrays[f"targets/{task}"] = table.targets[task][rows]
        arrays[f"mask/{task}"] = table.masks[task][rows]
    np.savez(os.path.join(run_dir, "cv_out_of_fold.npz"), **arrays)
    return arrays


def calibrate_out_of_fold(arrays, n_splits):
    from scripts.training.calibration import calibrate, calibrated_tasks

    tasks = [key.split("/", 1)[1] for key in arrays if key.startswith("logits/")]
    return {task: calibrate(task, arrays[f"logits/{task}"], arrays[f"targets/{task}"], arrays[f"mask/{task}"],
                            arrays["fold"], n_splits) for task in calibrated_tasks(tasks)}


def print_calibration(calibration):
    for task, entry in calibration.items():
        print(f"{task} calibrated {entry['metric']}: {entry['calibrated']['mean']:.3f} "
              f"[{entry['calibrated']['low']:.3f}, {entry['calibrated']['high']:.3f}] vs uncalibrated "
              f"{entry['uncalibrated']['mean']:.3f} (cross-fitted); offsets {entry['offsets']}")
        if "set_decision" in entry:
            chosen, difference = entry["set_decision"]["set_decision"], entry["set_decision"]["difference"]
            print(f"{task} set decision {entry['metric']}: {chosen['mean']:.3f} [{chosen['low']:.3f}, "
                  f"{chosen['high']:.3f}], minus the 0.5 threshold {difference['mean']:+.3f} "
                  f"[{difference['low']:+.3f}, {difference['high']:+.3f}] (cross-fitted, paired)")


def command_decisions(args):
    """Decision calibration (offsets, and the set decision for multi-label tasks) of finished CV runs, from their
    cv_out_of_fold.npz, without training again; report JSON in each run folder."""
    import numpy as np

    from scripts.training.metrics import json_ready
    from util.file_utils import write_json_atomic

    for run_dir in args.runs:
        arrays = dict(np.load(os.path.join(run_dir, "cv_out_of_fold.npz")))
        calibration = calibrate_out_of_fold(arrays, int(arrays["fold"].max()) + 1)
        print(os.path.basename(os.path.normpath(run_dir)))
        print_calibration(calibration)
        write_json_atomic(os.path.join(run_dir, "decisions.json"), json_ready(calibration))


def print_summary(summary):
    from scripts.training.metrics import HEADLINE

    for task, metrics in summary.items():
        m = metrics[HEADLINE[task]]
        print(f"{task}: {HEADLINE[task]} {m['mean']:.3f} [95% CI {m['low']:.3f}, {m['high']:.3f}]")


def command_gates(args):
    """Unclear gates from CV runs (their cv_out_of_fold.npz), report JSON, optionally into the manifest."""
    import json

    import numpy as np

    from scripts.training.gates import gates_from_out_of_fold
    from scripts.training.install import install_gates
    from scripts.training.metrics import json_ready
    from util.file_utils import write_json_atomic

    tables = load_tables(args)
    cache = crop_cache.open_tables_cache(list(tables.values()), args.cache_root)
    gates, report = {}, {}
    for run_dir in args.runs:
        with open(os.path.join(run_dir, "cv_report.json"), encoding="utf-8") as f:
            cv_report = json.load(f)
        n_splits = len({fold["fold"] for fold in cv_report["folds"]})
        arrays = dict(np.load(os.path.join(run_dir, "cv_out_of_fold.npz")))
        group = os.path.basename(os.path.normpath(run_dir)).split("-")[0]
        offsets = {task: entry["offsets"] for task, entry in cv_report.get("calibration", {}).items()}
        for task, (gate, task_report) in gates_from_out_of_fold(arrays, cache, tables[group].base_tasks,
                                                                n_splits, offsets).items():
            gates[task] = gate
            report[task] = {"run": os.path.basename(os.path.normpath(run_dir)), "parameters": gate.to_dict(),
                            **task_report}
            figures = task_report["gate"]
            print(f"{task}: unclear gate precision {figures['precision']['mean']:.3f} "
                  f"[{figures['precision']['low']:.3f}, {figures['precision']['high']:.3f}], recall "
                  f"{figures['recall']['mean']:.3f} [{figures['recall']['low']:.3f}, {figures['recall']['high']:.3f}]"
                  f" ({task_report['rows']} rows, {task_report['unclear_fraction']:.0%} unclear)")
            effect = task_report["task_metric_unclear_included_vs_excluded"]
            print(f"  {effect['metric']}: all labelled {effect['all']['mean']:.3f} [{effect['all']['low']:.3f}, "
                  f"{effect['all']['high']:.3f}], gate-clear only {effect['clear_only']['mean']:.3f} "
                  f"[{effect['clear_only']['low']:.3f}, {effect['clear_only']['high']:.3f}], coverage "
                  f"{effect['coverage']['mean']:.3f}")
    write_json_atomic(args.report, json_ready(report))
    print(f"report: {args.report}")
    if args.install:
        install_gates({task: {**gate.to_dict(), "cv": json_ready(report[task]["gate"])}
                       for task, gate in gates.items()})
        print("gates written into the plugin's manifest")


def command_export(args):
    from scripts.training.export import export_and_verify
    from scripts.training.models import load_checkpoint

    model, checkpoint = load_checkpoint(args.checkpoint)
    report = export_and_verify(model, args.output, args.fp16_weights, checkpoint.get("input_size", 256),
                               checkpoint.get("flip_average", False))
    print(f"{args.output}: outputs {report['output_names']}, max |onnx - torch| {report['max_abs_diff']}")


def command_install(args):
    from scripts.training.install import install_model

    entry = install_model(args.onnx, args.group, args.name, args.source)
    print(f"installed {entry['file']} (sha256 {entry['sha256']}) for {', '.join(entry['outputs'])}")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--debug", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    cache = commands.add_parser("cache", help="build the crop cache")
    add_data_arguments(cache)
    cache.set_defaults(run=command_cache)

    select = commands.add_parser("select", help="frozen-feature model selection (repeated stratified k-fold)")
    add_data_arguments(select)
    add_train_arguments(select, epochs=40, lr=1e-3)
    select.add_argument("--groups", nargs="+", choices=list(datasets.GROUPS), default=list(datasets.GROUPS))
    select.add_argument("--backbones", nargs="+", choices=list(BACKBONES),
                        default=["mobilenet_v2", "efficientnet_lite0"])
    select.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    select.add_argument("--folds", type=int, default=5)
    select.add_argument("--repeats", type=int, default=3)
    select.add_argument("--out", default=os.path.join(DEFAULT_RUNS, "selection"))
    select.set_defaults(run=command_select)

    finetune = commands.add_parser("finetune", help="fine-tune the last backbone stages + heads, then export")
    add_data_arguments(finetune)
    add_train_arguments(finetune, epochs=30, lr=1e-3)
    finetune.add_argument("--group", choices=list(datasets.GROUPS), required=True,
                          help="eyes (eye band: eyelids + eyelashes), facial_hair (face crop), per_eye (one crop "
                               "per eye, 128 px: per-eye eyelids)")
    finetune.add_argument("--backbone", choices=list(BACKBONES), default="mobilenet_v2")
    finetune.add_argument("--head", choices=HEADS, default="linear")
    finetune.add_argument("--train-stages", type=int, default=3,
                          help="last K backbone stages trained (>= the stage count: full fine-tune, slow)")
    finetune.add_argument("--augmented-views", type=int, default=6, help="cached augmented views per face")
    finetune.add_argument("--cv-folds", type=int, default=5, help="0: no CV estimate")
    finetune.add_argument("--cv-repeats", type=int, default=1)
    finetune.add_argument("--val-fraction", type=float, default=0.0,
                          help="final fit: part of the faces kept for validation curves (0: train on all)")
    finetune.add_argument("--no-final", action="store_true", help="CV estimate only")
    finetune.add_argument("--input-downsample", type=int, choices=(1, 2), default=1,
                          help="average-pool the crop inside the network (2: 256 -> 128, ~4x cheaper)")
    finetune.add_argument("--input-window", type=int, nargs=4, metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"),
                          help="the network reads only this window of the 256x256 crop (before pooling), e.g. "
                               "the lower face for facial hair: 128 256 32 224")
    finetune.add_argument("--flip-average", action="store_true",
                          help="score (CV) and export the mean logits of each crop and its mirror image "
                               "(face-level tasks; the exported network runs a batch twice the size)")
    finetune.add_argument("--ensemble", type=int, default=1,
                          help="members per model (seeds SEED, SEED+1, ...), trained alike and exported as one "
                               "network that shares the frozen stages and averages the logits (linear heads)")
    finetune.add_argument("--calibrate", action="store_true",
                          help="decision offsets chosen on the CV's out-of-fold predictions (cross-fitted "
                               "estimate reported) and built into the exported model")
    finetune.add_argument("--out", default=DEFAULT_RUNS)
    add_fp16_argument(finetune)
    finetune.set_defaults(run=command_finetune)

    export = commands.add_parser("export", help="ONNX export of a checkpoint, checked against torch")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--output", required=True)
    add_fp16_argument(export)
    export.set_defaults(run=command_export)
    gates = commands.add_parser("gates", help="fit the unclear gates on finetune runs made with --unclear-heads")
    add_data_arguments(gates)
    gates.add_argument("--runs", nargs="+", required=True, help="finetune run folders (with cv_out_of_fold.npz)")
    gates.add_argument("--report", default=os.path.join(DEFAULT_RUNS, "unclear_gates.json"))
    gates.add_argument("--install", action="store_true", help="write the gates into the plugin's manifest")
    gates.set_defaults(run=command_gates)

    decisions = commands.add_parser("decisions", help="decision offsets and the multi-label set decision, "
                                    "cross-fitted on finished CV runs (no training)")
    decisions.add_argument("--runs", nargs="+", required=True, help="finetune run folders (with cv_out_of_fold.npz)")
    decisions.set_defaults(run=command_decisions)

    install = commands.add_parser("install", help="copy an exported ONNX into the plugin and update its manifest")
    install.add_argument("--onnx", required=True)
    install.add_argument("--group", choices=list(datasets.GROUPS), required=True)
    install.add_argument("--name", required=True, help="file name in face_recognition/ax_facial_features/")
    install.add_argument("--source", default="trained with scripts/train_facial_features.py",
                         help="provenance text for the manifest")
    install.set_defaults(run=command_install)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    try:
        args.run(args)
    except AxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
