"""What a dataset holds: images per split, labels per image and per class, what each regime observes, what was skipped."""

from patchpu_keras.data.regimes import observe


def _label_stats(labels, class_names):
    positives = labels > 0
    return {
        "mean_labels_per_image": float(positives.sum(axis=1).mean()) if len(labels) else 0.0,
        "per_class": {name: int(count) for name, count in zip(class_names, positives.sum(axis=0))},
    }


def summarize(index, regimes=None, label_seed=1200, partial_fraction=0.1):
    """A dict describing `index` (a `DatasetIndex`).

    Args:
        index: `DatasetIndex`.
        regimes: regimes to report the observed training labels of; defaults to
            every regime the data allows.
        label_seed: int, seed of the draws.
        partial_fraction: float, fraction of the "partial" regime.

    Returns:
        A dict with `source`, `root`, `class_names`, `splits` (per split:
        `images`, `labels` ("full" or "observed"), `mean_labels_per_image`,
        `per_class` positive counts), `regimes` (per regime: mean observed
        positives, negatives and unknowns per training image), `test_labels`,
        `problems` (`{action: {reason: count}}`), `problem_files` and `notes`.
    """
    train = index.splits["train"]
    splits = {}
    for name, split in index.splits.items():
        labels = split.known_labels
        kind = "full" if split.full_labels is not None else "observed"
        if name == "test" and index.test_labels == "observed":
            kind = "observed"
        splits[name] = {"images": len(split), "labels": kind, **_label_stats(labels, index.class_names)}
    if regimes is None:
        regimes = ("single_positive", "partial", "full") if train.full_labels is not None else (
            "observed", "single_positive")
    regime_stats = {}
    for regime in regimes:
        try:
            observed = observe(
                train.full_labels, regime, seed=label_seed, partial_fraction=partial_fraction,
                observed_labels=train.observed_labels,
            )
        except ValueError as error:
            regime_stats[regime] = {"error": str(error)}
            continue
        regime_stats[regime] = {
            "positives_per_image": float((observed > 0).sum(axis=1).mean()),
            "negatives_per_image": float((observed < 0).sum(axis=1).mean()),
            "unknown_per_image": float((observed == 0).sum(axis=1).mean()),
            "observed_fraction": float((observed != 0).mean()),
        }
        if regime == "partial":
            regime_stats[regime]["fraction"] = partial_fraction
    problem_files = {}
    for problem in index.problems:
        key = f"{problem.action}: {problem.reason}"
        problem_files.setdefault(key, []).append(
            {"name": problem.name, "split": problem.split, "detail": problem.detail}
        )
    return {
        "source": index.source,
        "root": index.root,
        "class_names": list(index.class_names),
        "splits": splits,
        "test_labels": index.test_labels,
        "regimes": regime_stats,
        "label_seed": label_seed,
        "problems": index.problem_counts(),
        "problem_files": problem_files,
        "notes": list(index.notes),
    }


def format_summary(summary, max_files=20):
    """`summarize`'s dict as the text `python cli.py data summary` prints."""
    lines = [f"Source: {summary['source']} ({summary['root']}), {len(summary['class_names'])} classes"]
    splits = summary["splits"]
    for name, split in splits.items():
        lines.append(
            f"{name:5s}: {split['images']} images, {split['mean_labels_per_image']:.2f} "
            f"{'labels' if split['labels'] == 'full' else 'observed positives'} per image"
        )
    if summary["test_labels"] == "observed":
        lines.append("test is evaluated on observed labels (held out of the training data)")
    lines.append("")
    lines.append("Positives per class:")
    width = max(len(name) for name in summary["class_names"])
    lines.append(f"  {'class':{width}s} " + " ".join(f"{name:>7s}" for name in splits))
    for name in summary["class_names"]:
        lines.append(f"  {name:{width}s} " + " ".join(f"{split['per_class'][name]:7d}" for split in splits.values()))
    lines.append("")
    lines.append(f"Observed training labels per image, by regime (seed {summary['label_seed']}):")
    for regime, stats in summary["regimes"].items():
        if "error" in stats:
            lines.append(f"  {regime:16s} not available: {stats['error']}")
            continue
        extra = f" (fraction {stats['fraction']})" if "fraction" in stats else ""
        lines.append(
            f"  {regime:16s} {stats['positives_per_image']:.2f} positives, "
            f"{stats['negatives_per_image']:.2f} negatives, {stats['unknown_per_image']:.2f} unknown{extra}"
        )
    lines.append("")
    counts = summary["problems"]
    total = sum(sum(by_reason.values()) for by_reason in counts.values())
    lines.append(f"Files skipped, converted or left out: {total}")
    for key, files in summary["problem_files"].items():
        lines.append(f"  {key}: {len(files)}")
        for entry in files[:max_files]:
            detail = f" ({entry['detail']})" if entry["detail"] else ""
            lines.append(f"    [{entry['split']}] {entry['name']}{detail}")
        if len(files) > max_files:
            lines.append(f"    ... and {len(files) - max_files} more")
    if summary["notes"]:
        lines.append("")
        lines.append("Notes:")
        lines += [f"  {note}" for note in summary["notes"]]
    return "\n".join(lines)
