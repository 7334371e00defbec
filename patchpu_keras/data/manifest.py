"""Your own images listed in a manifest: `DIR/*.csv` or `DIR/*.jsonl`.

Columns (csv header, or jsonl keys): `path` (relative to the manifest),
`split` (`train` or `test`), `labels` (names separated by `;`; in jsonl also a
list) and optional `negatives` (same format). For `train` rows they are the
observed labels (+1 for `labels`, -1 for `negatives`, unknown elsewhere); for
`test` rows, `labels` are the full labels (every other label is a negative;
`negatives`, if given, must not contradict them).
"""

import csv
import glob
import json
import os

import numpy as np

from patchpu_keras.data.dataset_index import DatasetIndex, hold_out
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_split import ImageSplit

EXTENSIONS = (".csv", ".jsonl")
REQUIRED = ("path", "split", "labels")


def find_manifest(data_dir):
    """The manifest file `data_dir` is or holds, or None; several candidates raise."""
    if os.path.isfile(data_dir):
        return data_dir if data_dir.endswith(EXTENSIONS) else None
    if not os.path.isdir(data_dir):
        return None
    found = sorted(p for ext in EXTENSIONS for p in glob.glob(os.path.join(data_dir, f"*{ext}")))
    if len(found) > 1:
        raise ValueError(
            f"{data_dir} holds several manifests; pass --data-dir the one to use. "
            f"Received: {[os.path.basename(p) for p in found]}"
        )
    return found[0] if found else None


def _names(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        items = value
    else:
        items = str(value).split(";")
    return [str(item).strip() for item in items if str(item).strip()]


def _read_rows(path):
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in REQUIRED if column not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{path}: the manifest needs the columns {list(REQUIRED)} (and optional "
                    f"'negatives'). Received: columns={reader.fieldnames}"
                )
            return [(line + 2, row) for line, row in enumerate(reader)]
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line}: not JSON ({error}). Received: {text[:80]!r}") from None
            missing = [column for column in REQUIRED if column not in row]
            if missing:
                raise ValueError(
                    f"{path}, line {line}: every row needs the keys {list(REQUIRED)}. "
                    f"Received: keys={sorted(row)}"
                )
            rows.append((line, row))
    return rows


def read_manifest(data_dir, holdout_fraction=0.1, holdout_seed=0):
    """Reads a csv or jsonl manifest.

    Rows of the same path and split are merged (their labels joined). A row
    with an unknown split, a label that is both positive and negative, or no
    label at all is skipped with a problem entry.

    Args:
        data_dir: the manifest, or a folder holding exactly one.
        holdout_fraction: float, part of the training images held out as the
            test split when no row is in `test`.
        holdout_seed: int.

    Returns:
        A `DatasetIndex` (images not yet decode-checked; `load_index` does it).
        Class names are every name in `labels` and `negatives`, sorted.
    """
    path = find_manifest(data_dir)
    if path is None:
        raise FileNotFoundError(
            f"No manifest in {data_dir}: looked for {os.path.join(data_dir, '*.csv')} and "
            f"*.jsonl. Received: data_dir={data_dir!r}"
        )
    base = os.path.dirname(os.path.abspath(path))
    problems, merged = [], {}
    for line, row in _read_rows(path):
        name = str(row["path"]).strip()
        split = str(row["split"]).strip().lower()

        def skip(reason, detail):
            problems.append(FileProblem(name, split, "skipped", reason,
                                        f"{os.path.basename(path)}, line {line}: {detail}"))

        if split not in ("train", "test"):
            skip("unknown split", f"split must be 'train' or 'test', not {row['split']!r}")
            continue
        entry = merged.setdefault((split, name), {"labels": set(), "negatives": set(), "line": line})
        entry["labels"].update(_names(row["labels"]))
        entry["negatives"].update(_names(row.get("negatives")))
    kept = {}
    for (split, name), entry in merged.items():
        detail = f"{os.path.basename(path)}, line {entry['line']}"
        conflict = sorted(entry["labels"] & entry["negatives"])
        if conflict:
            problems.append(FileProblem(name, split, "skipped", "label both positive and negative",
                                        f"{detail}: {conflict}"))
        elif not entry["labels"] and not entry["negatives"]:
            problems.append(FileProblem(name, split, "skipped", "no labels", f"{detail}: empty labels"))
        else:
            kept[(split, name)] = entry
    class_names = sorted(set().union(*([e["labels"] | e["negatives"] for e in kept.values()] or [set()])))
    column = {label: index for index, label in enumerate(class_names)}
    splits = {}
    for split in ("train", "test"):
        names = sorted(name for (s, name) in kept if s == split)
        labels = np.zeros((len(names), len(class_names)), "float32")
        for row, name in enumerate(names):
            entry = kept[(split, name)]
            labels[row, [column[label] for label in entry["labels"]]] = 1.0
            if split == "train":
                labels[row, [column[label] for label in entry["negatives"]]] = -1.0
        files = [name if os.path.isabs(name) else os.path.join(base, name) for name in names]
        images = ImageSplit(names=names, files=files)
        if split == "train":
            images.observed_labels = labels
        else:
            images.full_labels = labels
        splits[split] = images
    notes, test_labels = [f"manifest {path}"], "full"
    if not len(splits["train"]):
        raise ValueError(f"{path} has no usable 'train' row. Received: {len(merged)} rows")
    if not len(splits["test"]):
        train, test, note = hold_out(splits["train"], holdout_fraction, holdout_seed, "No 'test' rows")
        splits = {"train": train, "test": test}
        test_labels = "observed"
        notes.append(note)
    return DatasetIndex(
        source="manifest", root=data_dir, class_names=class_names, splits=splits,
        test_labels=test_labels, problems=problems, notes=notes,
    )
