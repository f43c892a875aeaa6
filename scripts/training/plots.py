"""Metric-evolution plots (matplotlib, Agg backend: no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)

from util.file_utils import atomic_output  # noqa: E402


def plot_history(history, path, title=""):
    """One row per task, one panel per metric, train and validation curves over epochs. Returns ``path``."""
    tasks = list(history[0]["train"].keys())
    metric_names = {t: [k for k in history[0]["train"][t] if k != "count"] for t in tasks}
    columns = max(len(names) for names in metric_names.values())
    figure, axes = plt.subplots(len(tasks), columns, figsize=(3.2 * columns, 2.8 * len(tasks)), squeeze=False)
    epochs = [record["epoch"] for record in history]
    for row, task in enumerate(tasks):
        for column in range(columns):
            axis = axes[row][column]
            if column >= len(metric_names[task]):
                axis.axis("off")
                continue
            name = metric_names[task][column]
            for split, style in (("train", "-"), ("val", "--")):
                values = [record.get(split, {}).get(task, {}).get(name) for record in history]
                if any(v is not None for v in values):
                    axis.plot(epochs, [float("nan") if v is None else v for v in values], style, label=split)
            axis.set_title(f"{task}: {name}", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=90)
    plt.close(figure)
    return path
