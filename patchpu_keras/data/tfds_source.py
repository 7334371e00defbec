"""`voc/2012` and `coco/2014` prepared with TensorFlow Datasets, read without any download.

Only data already prepared in `data_dir` is read (`builder.is_prepared()`);
nothing here calls `download_and_prepare`. To prepare it offline from the
original archives in a folder ARCHIVES (docs/datasets.md, TFDS):
`tfds.builder("voc/2012", data_dir=DIR).download_and_prepare(
download_config=tfds.download.DownloadConfig(manual_dir=ARCHIVES))`: TFDS
takes files found in `manual_dir` instead of downloading them, and checks
their checksums.

Labels follow the same protocol as the file readers: VOC's
`labels_no_difficult` (train = TFDS `train`, test = TFDS `validation`), COCO's
object labels with images without objects left out.
"""

import hashlib
import json
import os

import numpy as np

from patchpu_keras.data.dataset_index import DatasetIndex
from patchpu_keras.data.image_check import check_image_bytes, default_cache_dir
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_split import ImageSplit, objects_entry

# Recipe dataset -> TFDS name.
NAMES = {"voc2012": "voc/2012", "coco2014": "coco/2014"}
ARCHIVES = {
    "voc/2012": "VOCtrainval_11-May-2012.tar and VOC2012test.tar",
    "coco/2014": "train2014.zip, val2014.zip, test2014.zip, test2015.zip, "
                 "annotations_trainval2014.zip, image_info_test2014.zip and image_info_test2015.zip",
}
SPLITS = {"train": "train", "test": "validation"}
SCAN_VERSION = 2


def find_tfds(data_dir):
    """TFDS names of the datasets prepared in `data_dir` (`DIR/voc/2012/<version>/dataset_info.json`)."""
    found = []
    for name in NAMES.values():
        folder = os.path.join(data_dir, *name.split("/"))
        if os.path.isdir(folder) and any(
            os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder)
        ):
            found.append(name)
    return found


def not_found_message(data_dir, name):
    return (
        f"No prepared TFDS dataset {name} in {data_dir}: looked for "
        f"{os.path.join(data_dir, *name.split('/'), '<version>', 'dataset_info.json')}. Nothing is "
        f"downloaded: prepare it offline from a folder ARCHIVES holding {ARCHIVES[name]} with "
        f"`tfds.builder({name!r}, data_dir={data_dir!r}).download_and_prepare(download_config="
        "tfds.download.DownloadConfig(manual_dir=ARCHIVES))` (docs/datasets.md, TFDS). "
        f"Received: data_dir={data_dir!r}"
    )


def _scan(builder, split, name, workers):
    """Labels, ids and decode checks of every record of one TFDS split."""
    import concurrent.futures

    import tensorflow_datasets as tfds

    dataset = builder.as_dataset(
        split=split,
        decoders={"image": tfds.decode.SkipDecoding()},
        shuffle_files=False,
        read_config=tfds.ReadConfig(add_tfds_id=True),
    )
    records = []
    for record in dataset.as_numpy_iterator():
        objects = record["objects"]["label"]
        labels = record["labels_no_difficult"] if name == "voc/2012" else objects
        records.append({
            "id": record["tfds_id"].decode(),
            "filename": record["image/filename"].decode(),
            "labels": sorted({int(label) for label in labels}),
            "num_objects": int(len(objects)),
            # TFDS boxes are already (ymin, xmin, ymax, xmax) fractions of the image (for VOC,
            # TFDS does not subtract 1 from the 1-based xmin / ymin: one source pixel off).
            "boxes": np.asarray(record["objects"]["bbox"], "float64").reshape(-1, 4).tolist(),
            "object_labels": [int(label) for label in objects],
            "image": record["image"],
        })
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        checks = list(pool.map(lambda r: check_image_bytes(r["image"]), records))
    for record, (ok, reason, detail) in zip(records, checks):
        del record["image"]
        record.update(ok=ok, reason=reason, detail=detail)
    return records


def read_tfds(data_dir, name, cache_dir=None, workers=None):
    """Reads a prepared `voc/2012` or `coco/2014` from `data_dir`, decode-checking every image once.

    The scan (labels and checks of every record) is cached, keyed by the
    prepared dataset's folder and the modification time of its
    `dataset_info.json`.

    Args:
        data_dir: the TFDS data dir (holds `voc/2012/<version>/`).
        name: "voc/2012" or "coco/2014".
        cache_dir: optional directory of the scan cache.
        workers: threads decoding images for the check.

    Returns:
        A `DatasetIndex` with TFDS splits (images found by TFDS id).
    """
    import tensorflow_datasets as tfds

    if name not in ARCHIVES:
        raise ValueError(f"TFDS datasets this reader knows: {sorted(ARCHIVES)}. Received: name={name!r}")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(not_found_message(data_dir, name))
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(not_found_message(data_dir, name))
    class_names = list(builder.info.features["objects"]["label"].names)
    info_file = os.path.join(str(builder.data_dir), "dataset_info.json")
    key = f"{os.path.abspath(str(builder.data_dir))}:{os.stat(info_file).st_mtime_ns}"
    cache_path = os.path.join(
        cache_dir or default_cache_dir(), f"tfds_scan-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    )
    scans = None
    if os.path.isfile(cache_path):
        with open(cache_path) as handle:
            stored = json.load(handle)
        if stored.get("version") == SCAN_VERSION:
            scans = stored["splits"]
    if scans is None:
        workers = workers or min(8, os.cpu_count() or 1)
        scans = {split: _scan(builder, tfds_split, name, workers) for split, tfds_split in SPLITS.items()}
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        with open(cache_path + ".tmp", "w") as handle:
            json.dump({"version": SCAN_VERSION, "splits": scans}, handle)
        os.replace(cache_path + ".tmp", cache_path)

    splits, problems = {}, []
    for split, records in scans.items():
        names, ids, rows, objects = [], [], [], []
        for record in records:
            display = record["filename"]

            def report(action, reason, detail=None):
                problems.append(FileProblem(display, split, action, reason, detail))

            if not record["ok"]:
                report("skipped", record["reason"], record["detail"])
                continue
            if name == "coco/2014" and record["num_objects"] == 0:
                report("left out", "no annotations")
                continue
            if name == "voc/2012" and record["num_objects"] == 0:
                report("skipped", "annotation has no objects")
                continue
            if split == "train" and not record["labels"]:
                report("skipped", "no labels", "every object is marked difficult")
                continue
            if record["reason"]:
                report("converted", record["reason"])
            labels = np.zeros(len(class_names), "float32")
            labels[record["labels"]] = 1.0
            names.append(display)
            ids.append(record["id"])
            rows.append(labels)
            objects.append(objects_entry(record["boxes"], record["object_labels"]))
        splits[split] = ImageSplit(
            names=names,
            full_labels=np.asarray(rows, "float32").reshape(-1, len(class_names)),
            tfds={"name": name, "data_dir": data_dir, "split": SPLITS[split], "ids": ids},
            objects=objects,
        )
    notes = [f"TFDS {name} {builder.info.version} from {data_dir}: train = TFDS train, test = TFDS validation"]
    return DatasetIndex(
        source="tfds", root=data_dir, class_names=class_names, splits=splits, problems=problems, notes=notes,
    )
