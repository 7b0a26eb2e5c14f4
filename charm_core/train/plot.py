"""Loss and validation-mIoU curves from a run's metrics.jsonl."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first: no display on robots / CI)


def plot_metrics(jsonl: str | Path, out_png: str | Path) -> Path | None:
    """Two panels: training losses (CoL, InE, total) and validation Mean / Top-1 / Last-1 per step."""
    records = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    if not records:
        return None
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss", "total"), ("col", "CoL"), ("ine", "InE")):
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax_loss.plot(*zip(*points), label=label)
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_loss.legend()
    curves = (("val_mean", "Mean"), ("val_top1", "Top-1"), ("val_last1", "Last-1"), ("val_full", "all modalities"))
    for key, label in curves:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax_val.plot(*zip(*points), marker="o", label=label)
    ax_val.set(xlabel="step", ylabel="mIoU (classes present)", title="validation over all modality subsets")
    if ax_val.lines:
        ax_val.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
