"""Pascal VOC 2012 classification labels, from an extracted VOCdevkit or the tar itself.

A class is present in an image when the image has at least one object of that
class not marked difficult, as VOC's own `ImageSets/Main/<class>_<split>.txt`
files and Cole et al. 2021 count it. `train` (5,717 images) is the training
split and `val` (5,823) the test split, as in the paper. Object boxes (difficult
ones included) are kept for pointing scores (`ImageSplit.objects`).
"""

import os
import tarfile
import xml.etree.ElementTree as ElementTree

import numpy as np

from patchpu_keras.data.dataset_index import DatasetIndex
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_split import ImageSplit, objects_entry

CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
TAR_NAME = "VOCtrainval_11-May-2012.tar"
URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/" + TAR_NAME
# VOC split -> our split.
SPLITS = {"train": "train", "val": "test"}
_MARKER = os.path.join("ImageSets", "Main", "train.txt")


def find_voc(data_dir):
    """Where VOC 2012 is under `data_dir`: `("dir", VOC2012 folder)`, `("tar", tar path)` or None."""
    if os.path.isfile(data_dir) and data_dir.endswith(".tar"):
        return "tar", data_dir
    for candidate in (
        data_dir,
        os.path.join(data_dir, "VOC2012"),
        os.path.join(data_dir, "VOCdevkit", "VOC2012"),
    ):
        if os.path.isfile(os.path.join(candidate, _MARKER)):
            return "dir", candidate
    tar_path = os.path.join(data_dir, TAR_NAME)
    if os.path.isfile(tar_path):
        return "tar", tar_path
    return None


def not_found_message(data_dir):
    return (
        f"Pascal VOC 2012 not found in {data_dir}: looked for "
        f"{os.path.join(data_dir, 'VOCdevkit', 'VOC2012', _MARKER)} (also under "
        f"{os.path.join(data_dir, 'VOC2012')} and {data_dir} itself) and for "
        f"{os.path.join(data_dir, TAR_NAME)}. Get {TAR_NAME} (2 GB) from {URL} and pass "
        "--data-dir the tar, or the folder `tar xf` makes (it holds VOCdevkit/). "
        f"Received: data_dir={data_dir!r}"
    )


def parse_annotation(text):
    """`[(class name, difficult, box), ...]` of a VOC XML annotation (names stripped, lower case).

    `box` is the object's `bndbox` as `(top, left, bottom, right)` fractions
    of the image's `size` (VOC's pixel coordinates are 1-based and inclusive:
    `xmin = 1` is the left edge), or None when the box or the size is missing
    or not a number.
    """
    root = ElementTree.fromstring(text)
    width, height = _number(root, "size/width"), _number(root, "size/height")
    objects = []
    for element in root.findall("object"):
        name = (element.findtext("name") or "").strip().lower()
        difficult = (element.findtext("difficult") or "0").strip() == "1"
        box = [_number(element, f"bndbox/{key}") for key in ("ymin", "xmin", "ymax", "xmax")]
        if None in box or not width or not height:
            box = None
        else:
            top, left, bottom, right = box
            box = ((top - 1) / height, (left - 1) / width, bottom / height, right / width)
        objects.append((name, difficult, box))
    return objects


def _number(element, path):
    try:
        return float(element.findtext(path))
    except (TypeError, ValueError):
        return None


class _Folder:
    def __init__(self, root):
        self.root = root

    def read_text(self, relative):
        with open(os.path.join(self.root, relative), "rb") as handle:
            return handle.read()

    def image(self, relative):
        """`(file, byte_range, display name)`; the file may be missing (checked later)."""
        return os.path.join(self.root, relative), None, relative


class _Tar:
    def __init__(self, path):
        self.path = path
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
        self.members = {m.name: m for m in members}
        markers = [name for name in self.members if name.endswith("/" + _MARKER.replace(os.sep, "/"))]
        if not markers:
            raise FileNotFoundError(
                f"{path} holds no {_MARKER}: not a VOC 2012 trainval tar. Get {TAR_NAME} from {URL}. "
                f"Received: data_dir={path!r}"
            )
        self.prefix = markers[0][: -len(_MARKER)]

    def read_text(self, relative):
        member = self.members.get(self.prefix + relative.replace(os.sep, "/"))
        if member is None:
            raise FileNotFoundError(f"{self.path}:{self.prefix + relative}")
        with open(self.path, "rb") as handle:
            handle.seek(member.offset_data)
            return handle.read(member.size)

    def image(self, relative):
        name = self.prefix + relative.replace(os.sep, "/")
        member = self.members.get(name)
        display = f"{os.path.basename(self.path)}:{name}"
        if member is None:
            # A path that does not exist: the image check reports it as missing.
            return f"{self.path}/{name}", (0, 0), display
        return self.path, (member.offset_data, member.size), display


def read_voc(data_dir):
    """Reads VOC 2012 `train` and `val` from an extracted VOCdevkit or the tar.

    Args:
        data_dir: the tar, the `VOC2012` folder, `VOCdevkit`, or a folder
            holding either.

    Returns:
        A `DatasetIndex` (images not yet decode-checked; `load_index` does it).
        Images whose annotation is missing, unreadable, has no object or names
        an unknown class are skipped with a problem entry; so are training
        images whose objects are all difficult (no positive label).
    """
    found = find_voc(data_dir)
    if found is None:
        raise FileNotFoundError(not_found_message(data_dir))
    kind, location = found
    store = _Tar(location) if kind == "tar" else _Folder(location)
    column = {name: column for column, name in enumerate(CLASS_NAMES)}
    splits, problems = {}, []
    for voc_split, split in SPLITS.items():
        list_file = os.path.join("ImageSets", "Main", f"{voc_split}.txt")
        try:
            ids = store.read_text(list_file).decode().split()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"VOC 2012 split list {os.path.join(str(location), list_file)} is missing: the "
                f"folder is incomplete. Get {TAR_NAME} from {URL}. Received: data_dir={data_dir!r}"
            ) from None
        names, files, byte_ranges, rows, image_objects = [], [], [], [], []
        for image_id in ids:
            file, byte_range, display = store.image(os.path.join("JPEGImages", f"{image_id}.jpg"))
            annotation = os.path.join("Annotations", f"{image_id}.xml")

            def skip(reason, detail=None):
                problems.append(FileProblem(display, split, "skipped", reason, detail))

            try:
                objects = parse_annotation(store.read_text(annotation))
            except FileNotFoundError:
                skip("missing annotation", annotation)
                continue
            except ElementTree.ParseError as error:
                skip("unreadable annotation", f"{annotation}: {error}")
                continue
            if not objects:
                skip("annotation has no objects", annotation)
                continue
            unknown = sorted({name for name, _, _ in objects if name not in column})
            if unknown:
                skip("unknown class name", f"{annotation}: {', '.join(map(repr, unknown))}")
                continue
            labels = np.zeros(len(CLASS_NAMES), dtype="float32")
            for name, difficult, _ in objects:
                if not difficult:
                    labels[column[name]] = 1.0
            if split == "train" and not labels.any():
                skip("no labels", f"{annotation}: every object is marked difficult")
                continue
            names.append(display)
            files.append(file)
            byte_ranges.append(byte_range)
            rows.append(labels)
            image_objects.append(
                objects_entry([box for _, _, box in objects], [column[name] for name, _, _ in objects])
            )
        splits[split] = ImageSplit(
            names=names,
            files=files,
            byte_ranges=np.asarray(byte_ranges, "int64").reshape(-1, 2) if kind == "tar" else None,
            full_labels=np.asarray(rows, "float32").reshape(-1, len(CLASS_NAMES)),
            objects=image_objects,
        )
    notes = [f"VOC 2012 from {location}: train = VOC train, test = VOC val (as the paper)"]
    return DatasetIndex(
        source="voc", root=data_dir, class_names=list(CLASS_NAMES), splits=splits,
        problems=problems, notes=notes,
    )
