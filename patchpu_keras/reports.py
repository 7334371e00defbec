"""What `train` and `evaluate` write and print: report files and their text summaries.

`write_reports` writes an evaluation's `metrics.json`, `per_class.csv` and
`pr_curves.png`; `format_training_report` and `format_evaluation_report` are
the text `cli.py` prints, so user code can print the same.
"""

import contextlib
import csv
import json
import os
import sys
import warnings

from patchpu_keras.metrics.classification import PER_CLASS_COLUMNS, precision_recall_curve
from patchpu_keras.visualization import precision_recall_figure

NUM_CURVES_EACH_SIDE = 3
WARNING_PREFIX = "warning: "


def format_warning(message):
    """The one way every command prints a warning: a `warning: ...` line."""
    return f"{WARNING_PREFIX}{message}"


class WarningLines:
    """Prints warnings as `warning: ...` lines on stderr, and counts them (see `printed_warnings`)."""

    def __init__(self, echo=None):
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self.count = 0

    def __call__(self, message):
        self.count += 1
        self.echo(format_warning(message))

    def summary(self):
        """`N warning(s) above`, or None without any."""
        return f"{self.count} warning(s) above" if self.count else None


@contextlib.contextmanager
def printed_warnings(echo=None):
    """Inside, Python warnings (e.g. each skipped image file) print as counted `warning: ...` lines.

    Yields:
        The `WarningLines`; call it with a message to warn the same way.
    """
    lines = WarningLines(echo)
    with warnings.catch_warnings():  # the filters stay as they are; only how warnings print changes
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: lines(
            str(message))
        yield lines


def _best_and_worst(per_class, count=NUM_CURVES_EACH_SIDE):
    ranked = sorted((row for row in per_class if row["ap"] is not None),
                    key=lambda row: -row["ap"])
    if len(ranked) <= 2 * count:
        return ranked, []
    return ranked[:count], ranked[-count:]


def write_reports(report, full_labels, scores, out_dir):
    """Writes `metrics.json`, `per_class.csv` and `pr_curves.png` into `out_dir`.

    Returns:
        A dict of the three paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "metrics": os.path.join(out_dir, "metrics.json"),
        "per_class": os.path.join(out_dir, "per_class.csv"),
        "pr_curves": os.path.join(out_dir, "pr_curves.png"),
    }
    with open(paths["metrics"], "w") as file:
        json.dump({**report, "files": paths}, file, indent=2)
    with open(paths["per_class"], "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=PER_CLASS_COLUMNS)
        writer.writeheader()
        for row in report["per_class"]:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    names = [row["label"] for row in report["per_class"]]
    best, worst = _best_and_worst(report["per_class"])
    curves = []
    for group, rows in (("best", best), ("worst", worst)):
        for row in rows:
            c = names.index(row["label"])
            precision, recall, _ = precision_recall_curve(full_labels[:, c], scores[:, c])
            curves.append({"name": row["label"], "ap": row["ap"], "group": group,
                           "precision": precision, "recall": recall})
    title = f"Precision-recall, {report.get('split', '')} split, mAP {report['map'] or 0:.3f}"
    precision_recall_figure(curves, title=title).save(paths["pr_curves"])
    return paths


def format_training_report(report, out_dir):
    """The lines `cli.py train` prints after a run: test mAP, per-class AP, skipped files, time."""
    labels = "full labels" if report["evaluated_on"] == "full_labels" else (
        "observed labels (held out of the training data: an estimate)")
    lines = [
        f"\nTest mAP: {report['map']:.4f} on {report['num_test_images']} held-out images, "
        f"against their {labels}"
    ]
    for name, ap in report["per_class_ap"].items():
        lines.append(f"  {name:12s} {'n/a' if ap is None else f'{ap:.4f}'}")
    for action, by_reason in report.get("files_skipped", {}).items():
        lines.append(f"Files {action}: " + ", ".join(f"{count} {reason}" for reason, count in by_reason.items())
                     + " (`python cli.py data summary` lists them)")
    if report.get("kept_model") == "best_model.keras":
        lines.append(f"Kept epoch {report['kept_epoch']} of {report['epochs_completed']} (best validation mAP "
                     f"{report['best_val_map']:.4f} against its {report['validated_on'].split(' ')[0]}"
                     + (", stopped early" if report.get("stopped_early") else "") + "): the test mAP above is that epoch's")
    else:
        lines.append(f"Kept the last epoch ({report['epochs_completed']}): no validation split (val_fraction)")
    if report.get("thresholds"):
        decisions = report["test_decisions"]
        shipped, fixed = decisions["at_thresholds"], decisions["at_0.5"]
        lines.append(
            "Per-class thresholds chosen on the validation split, saved in best_model.keras: "
            f"test F1 micro {shipped['micro']['f1']:.3f} / macro {shipped['macro']['f1']:.3f} "
            f"(at 0.5: {fixed['micro']['f1']:.3f} / {fixed['macro']['f1']:.3f})"
        )
    files = report.get("files") or ["model.keras", "report.json", "heatmaps/"]
    lines.append(f"{report['epochs_completed']} epochs in {report['train_seconds']:.0f} s; wrote {out_dir}/"
                 "{" + ",".join(files) + "}")
    lines.append(json.dumps({"map": report["map"], "out": out_dir}))
    return "\n".join(lines)


def format_evaluation_report(report):
    """The table `cli.py evaluate` prints: mAP, per-class AP and P/R/F1, averages, files.

    P/R/F1 at 0.5, at the model's own thresholds (`thr m`, `@m`) and at the
    best-F1 threshold of this very split (`best t`, optimistic).
    """
    lines = [
        f"\n{report['split']} split, {report['num_images']} images: mAP "
        + ("n/a" if report["map"] is None else f"{report['map']:.4f}")
        + f" (against {report['evaluated_on']})",
        f"{'label':14s} {'AP':>6s} {'P@0.5':>6s} {'R@0.5':>6s} {'F1@0.5':>6s} {'thr m':>6s} "
        f"{'P@m':>6s} {'R@m':>6s} {'F1@m':>6s} {'best t':>6s} {'F1@t':>6s}",
    ]
    for row in report["per_class"]:
        cells = [row["ap"], row["precision@0.5"], row["recall@0.5"], row["f1@0.5"],
                 row.get("model_threshold"), row.get("precision@model"), row.get("recall@model"),
                 row.get("f1@model"), row["best_threshold"], row["f1@best"]]
        lines.append(f"{row['label'][:14]:14s} " + " ".join(
            "   n/a" if value is None else f"{value:6.3f}" for value in cells))
    for name, averages in (("at 0.5", report["at_threshold"]),
                           ("at the model's thresholds", report.get("at_model_thresholds")),
                           ("at best thresholds (of this split)", report["at_best_thresholds"])):
        if averages is None:
            continue
        micro, macro = averages["micro"], averages["macro"]
        lines.append(f"{name}: micro P/R/F1 {micro['precision']:.3f}/{micro['recall']:.3f}/"
                     f"{micro['f1']:.3f}, macro F1 {macro['f1']:.3f}")
    if "localization" in report:
        found = report["localization"]
        parts = [f"{key} {found[key]:.3f}" for key in
                 ("pointing", "attention_entropy_present", "attention_entropy_absent") if key in found]
        if not found["objects_known"]:
            parts.append("no pointing score: the data gives no object boxes")
        lines.append("localization: " + (", ".join(parts) or "n/a for this model"))
    if "files" in report:
        lines.append(f"wrote {', '.join(report['files'].values())}")
    return "\n".join(lines)
