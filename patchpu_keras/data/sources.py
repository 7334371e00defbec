"""Datasets on disk: detect what `--data-dir` holds, read it, check every image once.

Sources and what they need in `data_dir`:

| source | `data_dir` holds |
|---|---|
| `voc` | `VOCdevkit/VOC2012/` (or is it, or `VOC2012/`), or `VOCtrainval_11-May-2012.tar` (or is it) |
| `coco` | `annotations/instances_{train,val}2014.json`, `train2014/`, `val2014/` |
| `tfds` | a TFDS data dir with `voc/2012` or `coco/2014` prepared |
| `folders` | `train/<label>/<image>`, optional `test/<label>/<image>` |
| `manifest` | one `*.csv` or `*.jsonl` (or is it) |
"""

import collections
import os

import numpy as np

from patchpu_keras.configured import Configured, same_names
from patchpu_keras.data import coco, folders, manifest, tfds_source, voc
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_check import check_image_files, warn_problems


class ReadOptions(collections.namedtuple(
        "ReadOptions", ["dataset", "holdout_fraction", "holdout_seed", "cache_dir"])):
    """What a source's reader may need beyond `data_dir` (see `load_index`'s arguments)."""

    __slots__ = ()


class Source(collections.namedtuple("Source", ["name", "title", "detect", "read", "checks_own_images"])):
    """One kind of dataset on disk.

    Fields:
        name: str, the `--source` value.
        title: str, the name warnings and errors use.
        detect: callable, `data_dir` -> bool: does it hold this source?
            Called on files and folders, in the table's order.
        read: callable, `(data_dir, ReadOptions)` -> `DatasetIndex`.
        checks_own_images: bool, whether `read` decode-checks the images
            itself (folders, TFDS); otherwise `load_index` checks them.
    """

    __slots__ = ()


def _read_tfds(data_dir, options):
    prepared = tfds_source.find_tfds(data_dir) if os.path.isdir(data_dir) else []
    name = tfds_source.NAMES.get(options.dataset) or (prepared[0] if len(prepared) == 1 else None)
    if name is None:
        raise ValueError(
            "Which TFDS dataset? Use a recipe of voc2012 or coco2014, or keep one dataset in "
            f"--data-dir. Received: dataset={options.dataset!r}, prepared={prepared}"
        )
    return tfds_source.read_tfds(data_dir, name, cache_dir=options.cache_dir)


def _in_folder(find):
    return lambda data_dir: os.path.isdir(data_dir) and bool(find(data_dir))


# Detection tries the sources in this order.
SOURCES = {
    source.name: source
    for source in (
        Source(
            "voc", "VOC 2012",
            lambda d: d.endswith(".tar") if os.path.isfile(d) else _in_folder(voc.find_voc)(d),
            lambda d, options: voc.read_voc(d), checks_own_images=False,
        ),
        Source("coco", "COCO 2014", _in_folder(coco.find_coco), lambda d, options: coco.read_coco(d),
               checks_own_images=False),
        Source("tfds", "TFDS", _in_folder(tfds_source.find_tfds), _read_tfds, checks_own_images=True),
        Source(
            "folders", "folders", _in_folder(folders.find_folders),
            lambda d, options: folders.read_folders(
                d, options.holdout_fraction, options.holdout_seed, cache_dir=options.cache_dir),
            checks_own_images=True,
        ),
        Source(
            "manifest", "manifest",
            lambda d: d.endswith(manifest.EXTENSIONS) if os.path.isfile(d) else _in_folder(manifest.find_manifest)(d),
            lambda d, options: manifest.read_manifest(d, options.holdout_fraction, options.holdout_seed),
            checks_own_images=False,
        ),
    )
}
# The values `--source` accepts.
SOURCE_CHOICES = ("auto", *SOURCES)
# Recipe `dataset` -> what to say when --data-dir is missing or wrong.
DATASET_HINTS = {
    "voc2012": voc.not_found_message,
    "coco2014": coco.not_found_message,
}


def _custom_message(data_dir):
    return (
        f"No dataset found in {data_dir}: looked for VOC 2012 "
        f"({os.path.join(data_dir, 'VOCdevkit', 'VOC2012', 'ImageSets', 'Main', 'train.txt')} or "
        f"{voc.TAR_NAME}), COCO 2014 ({os.path.join(data_dir, 'annotations', 'instances_train2014.json')}), "
        f"a prepared TFDS voc/2012 or coco/2014, label folders "
        f"({os.path.join(data_dir, 'train', '<label>', '<image>')}) and a manifest "
        f"({os.path.join(data_dir, '*.csv')} or *.jsonl with columns path, split, labels). "
        "docs/datasets.md shows each layout. "
        f"Received: data_dir={data_dir!r}"
    )


def not_found_message(data_dir, dataset=None):
    """The error for a `data_dir` holding nothing readable, with how to get `dataset`."""
    if data_dir is None:
        hint = DATASET_HINTS.get(dataset, _custom_message)("DIR")
        hint = hint.replace("Received: data_dir='DIR'", "Received: data_dir=None")
        return f"No --data-dir given: this recipe reads its images from one. {hint}"
    if dataset in DATASET_HINTS:
        return DATASET_HINTS[dataset](data_dir)
    return _custom_message(data_dir)


def detect_source(data_dir):
    """The name of the first source of `SOURCES` that `data_dir` holds, or None."""
    if not os.path.exists(data_dir):
        return None
    return next((source.name for source in SOURCES.values() if source.detect(data_dir)), None)


def _verify(index, cache_dir):
    """Drops every image the pipeline could not decode; records conversions."""
    for split_name, split in list(index.splits.items()):
        if split.files is None or not len(split):
            continue
        ranges = list(split.byte_ranges) if split.byte_ranges is not None else None
        checks = check_image_files(split.files, ranges, cache_name=index.root, cache_dir=cache_dir)
        keep = np.array([check["ok"] for check in checks], dtype=bool)
        for name, check in zip(split.names, checks):
            problem = FileProblem.from_check(name, split_name, check)
            if problem is not None:
                index.problems.append(problem)
        index.splits[split_name] = split.subset(keep)
    return index


def _drop_unlabelled_training_images(index):
    train = index.splits["train"]
    known = train.known_labels
    empty = ~np.any(known != 0, axis=1)
    for row in np.flatnonzero(empty):
        index.problems.append(FileProblem(train.names[row], "train", "skipped", "no labels"))
    index.splits["train"] = train.subset(~empty)


def load_recipe_index(config, warn=True):
    """`load_index` with the data keys of a recipe dict (`data_dir`, `source`, holdout): `RECIPE_INDEX`."""
    return RECIPE_INDEX(config, warn=warn)


def load_index(
    data_dir,
    source="auto",
    dataset=None,
    holdout_fraction=0.1,
    holdout_seed=0,
    cache_dir=None,
    warn=True,
):
    """Reads the dataset in `data_dir` and decode-checks every image it lists.

    Args:
        data_dir: str, see the module docstring for each source's layout.
        source: "auto" (detect from `data_dir`) or a name of `SOURCES`.
        dataset: the recipe's dataset ("voc2012", "coco2014", "custom"): the
            TFDS dataset to read with `source="tfds"`, and the download hint of
            the error when `data_dir` holds nothing.
        holdout_fraction: float, part of the training images held out for
            testing when folders or a manifest give no test split.
        holdout_seed: int.
        cache_dir: directory of the image-check cache (default
            `$PATCHPU_CACHE_DIR` or `~/.cache/patchpu_keras`).
        warn: bool, emit one warning per skipped or converted file.

    Returns:
        A `DatasetIndex`. Every image in its splits decodes with
        `image_files.decode_image`, so the pipeline cannot fail on one mid-epoch.

    Raises:
        FileNotFoundError: `data_dir` holds none of the sources, naming the
            files looked for and where to get them.

    Example:
    >>> index = load_index("/data/VOCdevkit")
    >>> index.source, len(index.splits["train"]), len(index.splits["test"])
    ('voc', 5717, 5823)
    """
    if source not in SOURCE_CHOICES:
        raise ValueError(f"Unknown source. Expected one of {SOURCE_CHOICES}. Received: source={source!r}")
    if data_dir is None:
        raise FileNotFoundError(not_found_message(None, dataset))
    data_dir = os.path.expanduser(str(data_dir))
    if not os.path.exists(data_dir):
        raise FileNotFoundError(
            f"--data-dir {data_dir} does not exist. " + not_found_message(data_dir, dataset)
        )
    kind = detect_source(data_dir) if source == "auto" else source
    if kind is None:
        raise FileNotFoundError(not_found_message(data_dir, dataset))
    index = SOURCES[kind].read(data_dir, ReadOptions(dataset, holdout_fraction, holdout_seed, cache_dir))
    if not SOURCES[kind].checks_own_images:
        _verify(index, cache_dir)
    _drop_unlabelled_training_images(index)
    for split in ("train", "test"):
        if not len(index.splits[split]):
            raise ValueError(
                f"No usable {split} image in {data_dir} ({len(index.problems)} files skipped; "
                f"`python cli.py data summary` lists why). Received: source={kind!r}"
            )
    if warn:
        warn_problems(index.problems, f"{SOURCES[kind].title} ({data_dir})")
    return index


# The recipe keys `load_index` reads; their defaults are its signature's.
RECIPE_INDEX = Configured(
    load_index,
    {"data_dir": "data_dir", **same_names("source", "holdout_fraction", "holdout_seed")},
    from_recipe={"dataset": "dataset"},
)
