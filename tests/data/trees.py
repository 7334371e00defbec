"""Small datasets in the real VOC 2012, COCO 2014 and folder layouts, built from real photos.

The photos are the ones scikit-image ships (no download); each fixture image is
a different crop of one, resized to VOC-like 96x72.
"""

import io
import json
import os
import tarfile

import numpy as np
import skimage.data
from PIL import Image

PHOTO_DIR = os.path.dirname(skimage.data.__file__)
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg", "retina.jpg", "color.png")
SIZE = (96, 72)


def photo(number, size=SIZE):
    """A distinct RGB uint8 image: crop `number` of one of the shipped photos."""
    source = Image.open(os.path.join(PHOTO_DIR, PHOTOS[number % len(PHOTOS)])).convert("RGB")
    width, height = source.size
    shift = (number // len(PHOTOS)) * 0.07
    box = (int(width * shift), int(height * shift), int(width * (0.7 + shift)), int(height * (0.7 + shift)))
    return np.asarray(source.crop(box).resize(size, Image.BILINEAR))


def encode(array, fmt="JPEG", mode=None, **options):
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def voc_box(number):
    """The fixture's VOC `bndbox` of an image's object `number`: `(xmin, ymin, xmax, ymax)`, 1-based.

    Objects sit side by side in 30 px wide columns, full height but 2 px.
    """
    return 2 + 30 * number, 2, 31 + 30 * number, SIZE[1] - 2


def voc_xml(image_id, objects, size=SIZE):
    parts = [f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"
             f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
             "<segmented>0</segmented>"]
    for number, (name, difficult) in enumerate(objects):
        xmin, ymin, xmax, ymax = voc_box(number)
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    return ("".join(parts) + "</annotation>").encode()


# id -> objects [(class, difficult)]; the good images of the VOC fixture.
VOC_TRAIN = {
    "2008_000001": [("person", False)],
    "2008_000002": [("cat", False), ("cat", True)],
    "2008_000003": [("motorbike", False), ("person", False)],
    "2008_000004": [("diningtable", False), ("bottle", True)],
    "2008_000005": [("aeroplane", False)],
    "2008_000006": [("person", False), ("tvmonitor", False), ("chair", False)],
    "2008_000007": [("cat", False), ("sofa", False)],
    "2008_000008": [("bird", False), ("bird", False)],
}
VOC_VAL = {
    "2008_000101": [("person", False), ("dog", True)],
    "2008_000102": [("cat", False)],
    "2008_000103": [("motorbike", False)],
    "2008_000104": [("diningtable", False), ("person", False)],
    "2008_000105": [("aeroplane", False), ("bird", False)],
    "2008_000106": [("bottle", True)],  # only difficult: all-negative in the test split
}
# The bad inputs the data loaders handle, each with what must happen to it.
VOC_BAD = {
    "2009_000001": "truncated",       # skipped: corrupt or truncated image
    "2009_000002": "empty",           # skipped: empty file
    "2009_000003": "missing",         # listed in train.txt, no JPEG: skipped, missing file
    "2009_000004": "cmyk",            # converted: CMYK converted to RGB
    "2009_000005": "gray",            # converted: grayscale converted to RGB
    "2009_000006": "no_objects",      # skipped: annotation has no objects
    "2009_000007": "unknown_class",   # skipped: unknown class name
    "2009_000008": "only_difficult",  # skipped: no labels
}
VOC_BAD_OBJECTS = {"cmyk": [("horse", False)], "gray": [("sheep", False), ("cow", False)],
                   "no_objects": [], "unknown_class": [("dog", False), ("dgo", False)],
                   "only_difficult": [("boat", True)]}


def make_voc(root, bad=False):
    """A VOCdevkit/VOC2012 tree under `root`; returns the VOC2012 folder.

    With `bad`, `VOC_BAD` images are added to the train split.
    """
    voc = os.path.join(root, "VOCdevkit", "VOC2012")
    train = dict(VOC_TRAIN)
    for number, (image_id, objects) in enumerate(list(VOC_TRAIN.items()) + list(VOC_VAL.items())):
        write(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), encode(photo(number), quality=90))
        write(os.path.join(voc, "Annotations", f"{image_id}.xml"), voc_xml(image_id, objects))
    if bad:
        for number, (image_id, kind) in enumerate(VOC_BAD.items(), start=40):
            good = encode(photo(number), quality=90)
            content = {"truncated": good[: len(good) // 2], "empty": b"", "missing": None,
                       "cmyk": encode(photo(number), mode="CMYK", quality=90),
                       "gray": encode(photo(number), mode="L")}.get(kind, good)
            if content is not None:
                write(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), content)
            objects = VOC_BAD_OBJECTS.get(kind, [("horse", False)])
            write(os.path.join(voc, "Annotations", f"{image_id}.xml"), voc_xml(image_id, objects))
            train[image_id] = objects
    main = os.path.join(voc, "ImageSets", "Main")
    write(os.path.join(main, "train.txt"), "\n".join(train).encode() + b"\n")
    write(os.path.join(main, "val.txt"), "\n".join(VOC_VAL).encode() + b"\n")
    # TFDS' voc/2012 builder also reads a test list (without annotations).
    write(os.path.join(main, "test.txt"), "\n".join(VOC_VAL).encode() + b"\n")
    return voc


def make_voc_tar(root, bad=False):
    """The same tree as `make_voc`, packed as VOCtrainval_11-May-2012.tar (uncompressed)."""
    make_voc(os.path.join(root, "extracted"), bad=bad)
    path = os.path.join(root, "VOCtrainval_11-May-2012.tar")
    with tarfile.open(path, "w") as archive:
        archive.add(os.path.join(root, "extracted", "VOCdevkit"), arcname="VOCdevkit")
    return path


def voc_labels(objects):
    """Expected full labels: classes with an object not marked difficult."""
    return sorted({name for name, difficult in objects if not difficult})


# COCO fixture: categories with non-contiguous ids, as in the real json.
COCO_CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 3, "name": "car", "supercategory": "vehicle"},
                   {"id": 17, "name": "cat", "supercategory": "animal"},
                   {"id": 47, "name": "cup", "supercategory": "kitchen"},
                   {"id": 90, "name": "toothbrush", "supercategory": "indoor"}]
# split -> [(file stem, [category ids])]
COCO_IMAGES = {
    "train2014": [("a", [1]), ("b", [17, 17]), ("c", [1, 3]), ("d", [47]), ("e", [1, 47, 90]), ("f", [3])],
    "val2014": [("g", [1, 17]), ("h", [3]), ("i", [47, 1]), ("j", [90])],
}


def coco_bbox(number):
    """The fixture's COCO `bbox` of an image's annotation `number`: `[x, y, width, height]` in pixels."""
    return [1 + 30 * number, 5, 30, 60]


def make_coco(root, bad=False, categories=COCO_CATEGORIES):
    """A COCO 2014 tree (annotations/, train2014/, val2014/) under `root`.

    With `bad`, train2014 also gets an image without annotations (left out), one
    with an unknown category id (skipped), a listed but missing file and a
    grayscale one (converted).
    """
    number = 0
    for split, images in COCO_IMAGES.items():
        images = list(images)
        if bad and split == "train2014":
            images += [("noann", []), ("badcat", [1, 999]), ("missing", [3]), ("gray", [17])]
        entries, annotations = [], []
        for image_id, (stem, image_categories) in enumerate(images, start=1 if split == "train2014" else 1001):
            file_name = f"COCO_{split}_{image_id:012d}.jpg"
            if stem != "missing":
                write(os.path.join(root, split, file_name),
                      encode(photo(number), mode="L" if stem == "gray" else None))
            number += 1
            entries.append({"id": image_id, "file_name": file_name, "width": SIZE[0], "height": SIZE[1]})
            for number, category in enumerate(image_categories):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                    "iscrowd": 0, "area": 1800.0, "bbox": coco_bbox(number), "segmentation": []})
        content = {"images": entries, "annotations": annotations, "categories": list(categories)}
        write(os.path.join(root, "annotations", f"instances_{split}.json"), json.dumps(content).encode())
    return root


def eighty_categories():
    """COCO_CATEGORIES padded to COCO's 80 categories (what TFDS' coco/2014 builder expects)."""
    used = {c["id"] for c in COCO_CATEGORIES}
    extra = [{"id": i, "name": f"category{i}", "supercategory": "none"} for i in range(100, 200)][: 80 - len(used)]
    return sorted(COCO_CATEGORIES + extra, key=lambda c: c["id"])


def make_coco_archives(root):
    """What TFDS' coco/2014 builder extracts: the COCO tree plus the test image lists.

    train2014 also holds an image without annotations.
    """
    make_coco(root, categories=eighty_categories())
    train_json = os.path.join(root, "annotations", "instances_train2014.json")
    content = json.load(open(train_json))
    content["images"].append({"id": 500, "file_name": "COCO_train2014_000000000500.jpg", "width": 96, "height": 72})
    write(os.path.join(root, "train2014", "COCO_train2014_000000000500.jpg"), encode(photo(29)))
    write(train_json, json.dumps(content).encode())
    for number, split in enumerate(("test2014", "test2015")):
        file_name = f"COCO_{split}_{number:012d}.jpg"
        write(os.path.join(root, split, file_name), encode(photo(30 + number)))
        image = {"id": number, "file_name": file_name, "width": SIZE[0], "height": SIZE[1]}
        info = {"images": [image], "categories": eighty_categories()}
        write(os.path.join(root, "annotations", f"image_info_{split}.json"), json.dumps(info).encode())
    return root


def coco_labels(categories):
    names = {c["id"]: c["name"] for c in COCO_CATEGORIES}
    return sorted({names[c] for c in categories})


def make_folders(root, test=True, bad=False):
    """`root/train/<label>/` (and `root/test/<label>/`) folders.

    The same picture is in train/cat and train/sofa (one image, two labels).
    With `bad`, train also gets a PNG with alpha and a 16-bit PNG (converted),
    a zero-byte file and a text file (skipped).
    """
    layout = {
        "train": {"cat": [0, 1, 2], "dog": [3, 4], "sofa": [2, 5], "tree": [6, 7, 8]},
        "test": {"cat": [10, 11], "dog": [12], "sofa": [11, 13], "tree": [14]},
    }
    for split, labels in layout.items():
        if split == "test" and not test:
            continue
        for label, numbers in labels.items():
            for number in numbers:
                write(os.path.join(root, split, label, f"img{number:03d}.jpg"), encode(photo(number)))
    if bad:
        write(os.path.join(root, "train", "dog", "alpha.png"), encode(photo(20), "PNG", mode="RGBA"))
        sixteen = (photo(21)[..., 0].astype(np.uint16) * 257)
        write(os.path.join(root, "train", "tree", "deep.png"), encode(sixteen, "PNG"))
        write(os.path.join(root, "train", "cat", "empty.jpg"), b"")
        write(os.path.join(root, "train", "cat", "notes.txt"), b"taken in 2021")
    return root
