"""The record of a dataset file that was skipped, converted or left out."""

import typing

ACTIONS = ("skipped", "converted", "left out")


class FileProblem(typing.NamedTuple):
    """One file a source could not use as it is, and what was done with it.

    Every source (VOC, COCO, TFDS, folders, manifest) and the image checker
    report files this way; `DatasetIndex.problems` holds them, `cli.py data
    summary` lists them and the run report counts them.

    Fields:
        name: str, the file's name as the dataset gives it.
        split: "train" or "test".
        action: "skipped" (not used), "converted" (used after a conversion,
            e.g. CMYK to RGB) or "left out" (used by no split on purpose, e.g.
            a COCO image without annotations).
        reason: str, short category ("empty file", "no labels", ...).
        detail: optional str, the decoder's message or the line at fault.
    """

    name: str
    split: str
    action: str
    reason: str
    detail: typing.Optional[str] = None

    @classmethod
    def from_check(cls, name, split, check):
        """The problem an image check (`image_check.check_image_files`) reports, or None.

        A file that does not decode is skipped; one that decodes after a
        conversion is kept and reported as converted.
        """
        if not check["ok"]:
            return cls(name, split, "skipped", check["reason"], check["detail"])
        if check["reason"]:
            return cls(name, split, "converted", check["reason"])
        return None
