"""A dataset on disk, indexed: classes, splits and the files that were skipped."""

import dataclasses

import numpy as np

TEST_LABELS = ("full", "observed")


@dataclasses.dataclass
class DatasetIndex:
    """What every source (VOC, COCO, TFDS, folders, manifest) yields.

    Args:
        source: str, the kind of source: "voc", "coco", "tfds", "folders" or
            "manifest".
        root: str, what `--data-dir` pointed at.
        class_names: list of L str, in the order of the label columns.
        splits: dict with "train" and "test" `ImageSplit`s (VOC's and COCO's
            `val` sets are the "test" splits, as in the paper).
        test_labels: "full" when the test images carry their full labels;
            "observed" when the test split was held out of data that only has
            observed positives (folders without `test/`): its "full labels" are
            those positives and unobserved labels count as negatives.
        problems: list of `FileProblem`s, one per file skipped, converted
            or left out.
        notes: list of str, facts the summary and the run report repeat.

    Example:
    >>> index = patchpu_keras.data.load_index("/data/VOCdevkit")
    >>> index.class_names[:2], len(index.splits["train"])
    (['aeroplane', 'bicycle'], 5717)
    """

    source: str
    root: str
    class_names: list
    splits: dict
    test_labels: str = "full"
    problems: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.test_labels not in TEST_LABELS:
            raise ValueError(
                f"`test_labels` must be one of {TEST_LABELS}. Received: test_labels={self.test_labels!r}"
            )
        self.class_names = [str(name) for name in self.class_names]

    @property
    def train(self):
        return self.splits["train"]

    @property
    def test(self):
        return self.splits["test"]

    def problem_counts(self):
        """`{action: {reason: count}}` over `problems`."""
        counts = {}
        for problem in self.problems:
            by_reason = counts.setdefault(problem.action, {})
            by_reason[problem.reason] = by_reason.get(problem.reason, 0) + 1
        return counts


def hold_out(train, fraction, seed, missing):
    """Splits a training `ImageSplit` with observed labels into train and a held-out test split.

    The test split's `full_labels` are its observed positives, so it is
    evaluated on observed labels (`DatasetIndex.test_labels = "observed"`).

    Args:
        train: `ImageSplit` with `observed_labels`.
        fraction: float in (0, 1), part held out (at least one image).
        seed: int, seed of the draw.
        missing: str, what the data lacked, for the note ("No test/ folder").

    Returns:
        `(train, test, note)`.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"`holdout_fraction` must be in (0, 1). Received: holdout_fraction={fraction}")
    if len(train) < 2:
        raise ValueError(
            f"{missing} and only {len(train)} training image: nothing to hold out for testing. "
            f"Received: {len(train)} images"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    num_test = max(1, int(round(fraction * len(train))))
    test = train.subset(np.sort(order[:num_test]))
    test.full_labels = (test.observed_labels > 0).astype("float32")
    test.observed_labels = None
    note = (
        f"{missing}: {num_test} training images ({fraction:.0%}, seed {seed}) are held out and "
        "evaluated on their observed labels: labels not observed count as negatives, so the "
        "test mAP is an estimate (lower when images miss labels)"
    )
    return train.subset(np.sort(order[num_test:])), test, note
