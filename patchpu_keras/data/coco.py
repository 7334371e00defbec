"""COCO 2014 classification labels from `instances_{train,val}2014.json` and the image folders.

An image's labels are the categories of its instance annotations (crowd
annotations included). Classes are in the order of the json's `categories`.
Images without annotations are left out, as in the paper (82,081 train and
40,137 val images remain of 82,783 and 40,504). `train2014` is the training
split and `val2014` the test split. Annotation boxes are kept for pointing
scores (`ImageSplit.objects`).
"""

import json
import os

import numpy as np

from patchpu_keras.data.dataset_index import DatasetIndex
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_split import ImageSplit, objects_entry

URL = "https://cocodataset.org/#download"
# COCO split -> our split.
SPLITS = {"train2014": "train", "val2014": "test"}


def _annotation_file(data_dir, coco_split):
    for candidate in (
        os.path.join(data_dir, "annotations", f"instances_{coco_split}.json"),
        os.path.join(data_dir, f"instances_{coco_split}.json"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return None


def _image_dir(data_dir, coco_split):
    for candidate in (os.path.join(data_dir, coco_split), os.path.join(data_dir, "images", coco_split)):
        if os.path.isdir(candidate):
            return candidate
    return None


def find_coco(data_dir):
    """True when `data_dir` holds `annotations/instances_train2014.json` (or the json itself)."""
    return os.path.isdir(data_dir) and _annotation_file(data_dir, "train2014") is not None


def not_found_message(data_dir, missing=None):
    missing = missing or os.path.join(data_dir, "annotations", "instances_train2014.json")
    return (
        f"COCO 2014 not found in {data_dir}: looked for {missing}. Get "
        f"annotations_trainval2014.zip, train2014.zip and val2014.zip from {URL} and unzip "
        "them into one folder (it then holds annotations/, train2014/ and val2014/). "
        f"Received: data_dir={data_dir!r}"
    )


def _box_fractions(bbox, size):
    """COCO's `bbox` `[x, y, width, height]` (pixels) as `(top, left, bottom, right)` fractions.

    None when the box or the image's size is missing or malformed.
    """
    height, width = size
    try:
        x, y, box_width, box_height = (float(value) for value in bbox)
        return (y / float(height), x / float(width), (y + box_height) / float(height), (x + box_width) / float(width))
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def read_coco(data_dir):
    """Reads COCO 2014 train and val.

    Args:
        data_dir: folder holding `annotations/instances_{train,val}2014.json`
            (or the json files directly) and the `train2014/`, `val2014/` image
            folders (or `images/train2014/`, ...).

    Returns:
        A `DatasetIndex` (images not yet decode-checked; `load_index` does it).
        An image with an annotation whose category id is not in `categories`
        is skipped (its labels cannot be trusted); images without annotations
        are left out.
    """
    splits, problems, notes, class_names = {}, [], [], None
    for coco_split, split in SPLITS.items():
        annotation_file = _annotation_file(data_dir, coco_split)
        if annotation_file is None:
            raise FileNotFoundError(
                not_found_message(data_dir, os.path.join(data_dir, "annotations", f"instances_{coco_split}.json"))
            )
        image_dir = _image_dir(data_dir, coco_split)
        if image_dir is None:
            raise FileNotFoundError(not_found_message(data_dir, os.path.join(data_dir, coco_split) + os.sep))
        with open(annotation_file) as handle:
            content = json.load(handle)
        categories = content.get("categories") or []
        names = [str(category["name"]) for category in categories]
        if class_names is None:
            class_names = names
        elif names != class_names:
            raise ValueError(
                f"{annotation_file} lists other categories than the training json; both must "
                f"come from the same COCO release. Received: {len(names)} categories"
            )
        column = {category["id"]: index for index, category in enumerate(categories)}
        images = {image["id"]: image["file_name"] for image in content.get("images", [])}
        sizes = {image["id"]: (image.get("height"), image.get("width")) for image in content.get("images", [])}
        labels = {image_id: np.zeros(len(names), "float32") for image_id in images}
        # Per image, its annotations' boxes and label columns (pointing scores).
        boxes = {image_id: ([], []) for image_id in images}
        unknown = {}
        orphans = 0
        for annotation in content.get("annotations", []):
            image_id = annotation.get("image_id")
            if image_id not in labels:
                orphans += 1
                continue
            category = annotation.get("category_id")
            if category not in column:
                unknown.setdefault(image_id, set()).add(category)
                continue
            labels[image_id][column[category]] = 1.0
            boxes[image_id][0].append(_box_fractions(annotation.get("bbox"), sizes[image_id]))
            boxes[image_id][1].append(column[category])
        del content
        if orphans:
            notes.append(f"{os.path.basename(annotation_file)}: {orphans} annotations of unknown image ids ignored")
        kept_names, files, rows, objects = [], [], [], []
        for image_id in sorted(images):
            name = f"{coco_split}/{images[image_id]}"
            if image_id in unknown:
                problems.append(FileProblem(
                    name, split, "skipped", "unknown category id",
                    f"category_id {sorted(unknown[image_id], key=str)} not in the json's categories",
                ))
                continue
            if not labels[image_id].any():
                problems.append(FileProblem(name, split, "left out", "no annotations"))
                continue
            kept_names.append(name)
            files.append(os.path.join(image_dir, images[image_id]))
            rows.append(labels[image_id])
            objects.append(objects_entry(*boxes[image_id]))
        notes.append(
            f"COCO {coco_split}: {len(kept_names)} of {len(images)} images have annotations "
            f"(paper: {'82,081' if split == 'train' else '40,137'})"
        )
        splits[split] = ImageSplit(
            names=kept_names, files=files,
            full_labels=np.asarray(rows, "float32").reshape(-1, len(names)),
            objects=objects,
        )
    return DatasetIndex(
        source="coco", root=data_dir, class_names=class_names, splits=splits,
        problems=problems, notes=notes,
    )
