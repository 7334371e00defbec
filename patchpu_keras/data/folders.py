"""Your own images, gathered per label: `DIR/train/<label>/<image>`, optional `DIR/test/<label>/<image>`.

An image's labels are the folders it appears in: the same content (by SHA-1
hash) in several label folders is one image with several labels. In `train`
they are its observed positives (nothing is known of the other labels); in
`test`, its full labels. Without `test/`, a seeded fraction of the training
images is held out and evaluated on its observed labels.
"""

import os

import numpy as np

from patchpu_keras.data.dataset_index import DatasetIndex, hold_out
from patchpu_keras.data.image_check import check_image_files
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_split import ImageSplit


def find_folders(data_dir):
    """True when `data_dir/train` holds at least one label folder."""
    train = os.path.join(data_dir, "train")
    if not os.path.isdir(train):
        return False
    with os.scandir(train) as entries:
        return any(entry.is_dir() and not entry.name.startswith(".") for entry in entries)


def _list_files(split_dir):
    """`{label: [paths]}` of every visible file under `split_dir/<label>/` (recursively)."""
    files = {}
    with os.scandir(split_dir) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    for entry in entries:
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        found = []
        for folder, subfolders, names in os.walk(entry.path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            found += [os.path.join(folder, name) for name in sorted(names) if not name.startswith(".")]
        files[entry.name] = found
    return files


def read_folders(data_dir, holdout_fraction=0.1, holdout_seed=0, cache_dir=None):
    """Reads `DIR/train/<label>/...` and `DIR/test/<label>/...`.

    Every file is decode-checked here (the content hash that merges duplicates
    comes from the same read), so unreadable files never reach a split.

    Args:
        data_dir: str.
        holdout_fraction: float, part of the training images held out as the
            test split when there is no `test/` folder.
        holdout_seed: int, seed of that draw.
        cache_dir: optional directory of the image-check cache.

    Returns:
        A `DatasetIndex`: train split with `observed_labels` (+1 for each label
        folder holding the image, 0 elsewhere), test split with `full_labels`.
        Class names are the label folders' names, sorted.
    """
    listed = {}
    for split in ("train", "test"):
        split_dir = os.path.join(data_dir, split)
        if os.path.isdir(split_dir):
            listed[split] = _list_files(split_dir)
    if not listed.get("train"):
        raise FileNotFoundError(
            f"No label folders in {os.path.join(data_dir, 'train')}: put each label's images in "
            f"{os.path.join(data_dir, 'train', '<label>')}/. Received: data_dir={data_dir!r}"
        )
    class_names = sorted(set().union(*(set(labels) for labels in listed.values())))
    column = {name: index for index, name in enumerate(class_names)}
    problems, notes, splits, hashes = [], [], {}, {}
    for split, by_label in listed.items():
        entries = [(label, path) for label, paths in by_label.items() for path in paths]
        checks = check_image_files([path for _, path in entries], cache_name=data_dir, cache_dir=cache_dir)
        images = {}  # sha1 -> [representative path, labels]
        for (label, path), check in zip(entries, checks):
            problem = FileProblem.from_check(os.path.relpath(path, data_dir), split, check)
            if not check["ok"]:
                problems.append(problem)
                continue
            if check["sha1"] not in images:
                images[check["sha1"]] = [path, np.zeros(len(class_names), "float32")]
                if problem is not None:
                    problems.append(problem)
            images[check["sha1"]][1][column[label]] = 1.0
        ordered = sorted(images.items(), key=lambda item: item[1][0])
        hashes[split] = {sha1 for sha1, _ in ordered}
        duplicates = len(entries) - len(ordered) - sum(p.action == "skipped" and p.split == split for p in problems)
        if duplicates:
            notes.append(f"{split}: {duplicates} files are copies of another file (same content): "
                         "one image, labelled with every folder holding it")
        paths = [path for _, (path, _) in ordered]
        labels = np.asarray([row for _, (_, row) in ordered], "float32").reshape(-1, len(class_names))
        split_images = ImageSplit(names=[os.path.relpath(p, data_dir) for p in paths], files=paths)
        if split == "train":
            split_images.observed_labels = labels
        else:
            split_images.full_labels = labels
        splits[split] = split_images
    test_labels = "full"
    if "test" in splits:
        overlap = len(hashes["train"] & hashes["test"])
        if overlap:
            notes.append(f"{overlap} test images are also in train (same content)")
    else:
        train, test, note = hold_out(splits["train"], holdout_fraction, holdout_seed, "No test/ folder")
        splits = {"train": train, "test": test}
        test_labels = "observed"
        notes.append(note)
    counts = splits["train"].observed_labels.sum(axis=0)
    empty = [name for name, count in zip(class_names, counts) if count == 0]
    if empty:
        notes.append(f"labels with no training image: {', '.join(empty)}")
    return DatasetIndex(
        source="folders", root=data_dir, class_names=class_names, splits=splits,
        test_labels=test_labels, problems=problems, notes=notes,
    )
