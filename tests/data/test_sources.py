import json
import os
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf

from data import trees
from patchpu_keras.data import detect_source, image_dataset, load_index
from patchpu_keras.data.voc import CLASS_NAMES as VOC_CLASSES


def _labels_by_name(index, split):
    images = index.splits[split]
    return {
        os.path.splitext(os.path.basename(name))[0]: sorted(index.class_names[c] for c in np.flatnonzero(row > 0))
        for name, row in zip(images.names, images.known_labels)
    }


def _load(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = load_index(path, **kwargs)
    return index, [str(w.message) for w in caught]


def _pixels(split, image_size=32):
    dataset = image_dataset(split, full_labels=split.known_labels.clip(0, 1), image_size=image_size, batch_size=64)
    return np.concatenate([images.numpy() for images, _ in dataset])


def test_voc_labels_follow_the_non_difficult_objects(tmp_path):
    trees.make_voc(tmp_path)
    index, messages = _load(str(tmp_path))
    assert index.source == "voc" and index.class_names == list(VOC_CLASSES) and not messages
    assert len(index.train) == len(trees.VOC_TRAIN) and len(index.test) == len(trees.VOC_VAL)
    assert _labels_by_name(index, "train") == {k: trees.voc_labels(v) for k, v in trees.VOC_TRAIN.items()}
    assert _labels_by_name(index, "test") == {k: trees.voc_labels(v) for k, v in trees.VOC_VAL.items()}
    # A difficult-only test image is an all-negative test image, not dropped.
    assert _labels_by_name(index, "test")["2008_000106"] == []
    assert index.test_labels == "full" and index.problems == []


def _objects_by_name(index, split):
    images = index.splits[split]
    return {os.path.splitext(os.path.basename(name))[0]: entry for name, entry in zip(images.names, images.objects)}


def test_voc_keeps_every_object_box_as_fractions_of_the_image(tmp_path):
    voc = trees.make_voc(tmp_path)
    # One annotation without a size: its image's boxes are unknown, its labels still read.
    annotation = os.path.join(voc, "Annotations", "2008_000102.xml")
    with open(annotation, "rb") as handle:
        text = handle.read().replace(b"<width>96</width>", b"")
    with open(annotation, "wb") as handle:
        handle.write(text)
    index, messages = _load(str(tmp_path))
    assert not messages and _labels_by_name(index, "test")["2008_000102"] == ["cat"]
    objects = _objects_by_name(index, "test")
    assert objects["2008_000102"] is None
    # Two objects side by side: xmin 2 / 32, xmax 31 / 61, ymin 2, ymax 70 (1-based, inclusive) in 96 x 72.
    boxes, classes = objects["2008_000105"]
    np.testing.assert_allclose(boxes, [[1 / 72, 1 / 96, 70 / 72, 31 / 96], [1 / 72, 31 / 96, 70 / 72, 61 / 96]],
                               rtol=1e-6)
    assert [VOC_CLASSES[c] for c in classes] == ["aeroplane", "bird"]
    # A difficult object keeps its box (a peak on it is on its class), though it is not a label.
    assert [VOC_CLASSES[c] for c in objects["2008_000101"][1]] == ["person", "dog"]
    assert [VOC_CLASSES[c] for c in _objects_by_name(index, "train")["2008_000002"][1]] == ["cat", "cat"]
    # In the pixels of a 32 px model input (a plain resize): the fractions times 32.
    pixels = index.test.object_boxes(32)
    row = [os.path.basename(name) for name in index.test.names].index("2008_000105.jpg")
    np.testing.assert_allclose(pixels[0][row][1], [32 / 72, 31 * 32 / 96, 70 * 32 / 72, 61 * 32 / 96], rtol=1e-6)
    assert pixels[0][[os.path.basename(n) for n in index.test.names].index("2008_000102.jpg")] is None


@pytest.mark.parametrize("where", ["parent", "VOCdevkit", "VOC2012"])
def test_voc_is_found_from_any_of_its_folders(tmp_path, where):
    voc = trees.make_voc(tmp_path)
    path = {"parent": str(tmp_path), "VOCdevkit": os.path.dirname(voc), "VOC2012": voc}[where]
    assert detect_source(path) == "voc"
    assert len(load_index(path).train) == len(trees.VOC_TRAIN)


def test_voc_tar_reads_like_the_extracted_folder(tmp_path):
    tar = trees.make_voc_tar(tmp_path / "tar", bad=True)
    trees.make_voc(tmp_path / "dir", bad=True)
    from_tar, tar_messages = _load(tar)
    from_dir, dir_messages = _load(str(tmp_path / "dir"))
    assert from_tar.source == "voc" and from_tar.train.byte_ranges is not None
    assert from_tar.train.names[0].startswith("VOCtrainval_11-May-2012.tar:VOCdevkit/VOC2012/JPEGImages/")
    assert _labels_by_name(from_tar, "train") == _labels_by_name(from_dir, "train")
    assert from_tar.problem_counts() == from_dir.problem_counts()
    assert len(tar_messages) == len(dir_messages) == len(trees.VOC_BAD)
    np.testing.assert_array_equal(_pixels(from_tar.train), _pixels(from_dir.train))
    # The tar is also found when --data-dir is the folder holding it.
    assert detect_source(str(tmp_path / "tar")) == "voc"


def test_voc_bad_inputs_are_skipped_or_converted_with_a_warning_each(tmp_path):
    trees.make_voc(tmp_path, bad=True)
    index, messages = _load(str(tmp_path))
    expected = {
        "truncated": ("skipped", "corrupt or truncated image"),
        "empty": ("skipped", "empty file"),
        "missing": ("skipped", "missing file"),
        "cmyk": ("converted", "CMYK converted to RGB"),
        "gray": ("converted", "grayscale converted to RGB"),
        "no_objects": ("skipped", "annotation has no objects"),
        "unknown_class": ("skipped", "unknown class name"),
        "only_difficult": ("skipped", "no labels"),
    }
    for image_id, kind in trees.VOC_BAD.items():
        action, reason = expected[kind]
        named = [m for m in messages if f"{image_id}.jpg" in m]
        assert len(named) == 1 and f"{action} JPEGImages/{image_id}.jpg: {reason}" in named[0], kind
    counts = index.problem_counts()
    assert sum(counts["skipped"].values()) == 6 and sum(counts["converted"].values()) == 2
    labels = _labels_by_name(index, "train")
    assert set(labels) == set(trees.VOC_TRAIN) | {"2009_000004", "2009_000005"}
    # Converted images keep their own labels, not a neighbour's.
    assert labels["2009_000004"] == ["horse"] and labels["2009_000005"] == ["cow", "sheep"]
    # The misspelt "dgo" does not silently turn into a dog-only image.
    assert "2009_000007" not in labels
    # Every kept file goes through the pipeline, in tf.data, without an error.
    pixels = _pixels(index.train)
    assert pixels.shape == (len(index.train), 32, 32, 3)
    gray = pixels[index.train.names.index("JPEGImages/2009_000005.jpg")]
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    # Without the check, the truncated file would stop the pipeline mid-epoch.
    truncated = os.path.join(str(tmp_path), "VOCdevkit", "VOC2012", "JPEGImages", "2009_000001.jpg")
    with pytest.raises(tf.errors.InvalidArgumentError):
        _pixels(index.train.__class__(names=[truncated], files=[truncated], full_labels=np.ones((1, 20))))


def test_voc_missing_or_wrong_directory_says_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_index(str(tmp_path / "nowhere"), dataset="voc2012")
    assert "VOCdevkit/VOC2012/ImageSets/Main/train.txt" in str(error.value)
    assert "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="VOCtrainval_11-May-2012.tar"):
        load_index(str(tmp_path / "empty"), dataset="voc2012")
    with pytest.raises(FileNotFoundError, match="No --data-dir given.*Received: data_dir=None"):
        load_index(None, dataset="voc2012")
    voc = trees.make_voc(tmp_path / "broken")
    os.remove(os.path.join(voc, "ImageSets", "Main", "val.txt"))
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val.txt is missing"):
        load_index(str(tmp_path / "broken"))
    not_voc = tmp_path / "other.tar"
    import tarfile

    with tarfile.open(not_voc, "w") as archive:
        archive.add(__file__, arcname="readme.py")
    with pytest.raises(FileNotFoundError, match="not a VOC 2012 trainval tar"):
        load_index(str(not_voc))


def test_coco_labels_classes_and_bad_annotations(tmp_path):
    trees.make_coco(tmp_path, bad=True)
    index, messages = _load(str(tmp_path))
    assert index.source == "coco"
    assert index.class_names == [c["name"] for c in trees.COCO_CATEGORIES]  # the json's order
    by_file = {f"COCO_train2014_{i:012d}": stem for i, (stem, _) in enumerate(
        trees.COCO_IMAGES["train2014"] + [("noann", []), ("badcat", []), ("missing", []), ("gray", [])], start=1)}
    expected = {**dict(trees.COCO_IMAGES["train2014"]), "gray": [17]}
    labels = _labels_by_name(index, "train")
    assert {by_file[name]: value for name, value in labels.items()} == {
        stem: trees.coco_labels(categories) for stem, categories in expected.items()
    }
    assert len(index.test) == len(trees.COCO_IMAGES["val2014"])
    assert index.problem_counts() == {
        "left out": {"no annotations": 1}, "skipped": {"unknown category id": 1, "missing file": 1},
        "converted": {"grayscale converted to RGB": 1},
    }
    assert any("COCO_train2014_000000000008.jpg: unknown category id" in m and "999" in m for m in messages)
    assert any("left out train2014/COCO_train2014_000000000007.jpg: no annotations" in m for m in messages)
    assert "COCO train2014: 8 of 10 images have annotations (paper: 82,081)" in index.notes
    assert _pixels(index.train).shape == (len(index.train), 32, 32, 3)


def test_coco_keeps_annotation_boxes_as_fractions_of_the_image(tmp_path):
    trees.make_coco(tmp_path)
    val_json = tmp_path / "annotations" / "instances_val2014.json"
    content = json.load(open(val_json))
    content["annotations"][-1]["bbox"] = [1, 2, "wide"]  # image j's only box, malformed
    json.dump(content, open(val_json, "w"))
    index, _ = _load(str(tmp_path))
    objects = _objects_by_name(index, "test")
    # Image i: cup then person, bbox [1, 5, 30, 60] and [31, 5, 30, 60] in 96 x 72.
    boxes, classes = objects["COCO_val2014_000000001003"]
    np.testing.assert_allclose(boxes, [[5 / 72, 1 / 96, 65 / 72, 31 / 96], [5 / 72, 31 / 96, 65 / 72, 61 / 96]],
                               rtol=1e-6)
    assert [index.class_names[c] for c in classes] == ["cup", "person"]
    assert objects["COCO_val2014_000000001004"] is None
    assert _labels_by_name(index, "test")["COCO_val2014_000000001004"] == ["toothbrush"]


def test_coco_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"annotations/instances_train2014.json.*cocodataset.org"):
        load_index(str(tmp_path), dataset="coco2014")
    trees.make_coco(tmp_path)
    shutil.rmtree(tmp_path / "val2014")
    with pytest.raises(FileNotFoundError, match="looked for .*val2014/"):
        load_index(str(tmp_path))
    trees.make_coco(tmp_path)
    content = json.load(open(tmp_path / "annotations" / "instances_val2014.json"))
    content["categories"] = content["categories"][::-1]
    json.dump(content, open(tmp_path / "annotations" / "instances_val2014.json", "w"))
    with pytest.raises(ValueError, match="other categories than the training json"):
        load_index(str(tmp_path))


def test_folders_labels_are_the_folders_holding_the_same_content(tmp_path):
    trees.make_folders(tmp_path)
    index, messages = _load(str(tmp_path))
    assert index.source == "folders" and index.class_names == ["cat", "dog", "sofa", "tree"] and not messages
    train = index.train
    assert train.full_labels is None and train.observed_labels is not None
    labels = _labels_by_name(index, "train")
    assert labels["img002"] == ["cat", "sofa"]  # one picture in two folders: one image, two labels
    assert labels["img000"] == ["cat"] and labels["img006"] == ["tree"]
    assert len(train) == 9 and set(np.unique(train.observed_labels)) == {0.0, 1.0}
    assert _labels_by_name(index, "test") == {
        "img010": ["cat"], "img011": ["cat", "sofa"], "img012": ["dog"], "img013": ["sofa"], "img014": ["tree"]}
    assert index.test_labels == "full"
    assert any("copies of another file" in note for note in index.notes)


def test_folders_without_test_hold_out_a_seeded_tenth_evaluated_on_observed_labels(tmp_path):
    trees.make_folders(tmp_path, test=False, bad=True)
    index, messages = _load(str(tmp_path), holdout_seed=3)
    again = load_index(str(tmp_path), holdout_seed=3, warn=False)
    other = load_index(str(tmp_path), holdout_seed=4, warn=False)
    assert index.test_labels == "observed" and len(index.test) == 1 and len(index.train) == 10
    assert index.test.names == again.test.names and index.train.names == again.train.names
    assert sorted(index.train.names + index.test.names) == sorted(other.train.names + other.test.names)
    assert any(note.startswith("No test/ folder: 1 training images (10%, seed 3)") for note in index.notes)
    # Bad files: PNG with alpha and 16-bit PNG converted, zero-byte and non-image skipped.
    assert index.problem_counts() == {
        "skipped": {"empty file": 1, "not an image": 1},
        "converted": {"alpha channel dropped": 1, "16-bit converted to 8-bit": 1},
    }
    for name in ("train/cat/empty.jpg", "train/cat/notes.txt", "train/dog/alpha.png", "train/tree/deep.png"):
        assert sum(name in m for m in messages) == 1
    labels = {**_labels_by_name(index, "train"), **_labels_by_name(index, "test")}
    assert labels["alpha"] == ["dog"] and labels["deep"] == ["tree"]


def _write_manifest(tmp_path, rows, kind="csv"):
    for number, row in enumerate(rows):
        trees.write(str(tmp_path / row["path"]), trees.encode(trees.photo(number)))
    if kind == "csv":
        lines = ["path,split,labels,negatives"] + [
            f"{r['path']},{r['split']},{r['labels']},{r.get('negatives', '')}" for r in rows]
        (tmp_path / "images.csv").write_text("\n".join(lines) + "\n")
    else:
        (tmp_path / "images.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_manifest_observed_train_labels_and_full_test_labels(tmp_path, kind):
    rows = [
        {"path": "a.jpg", "split": "train", "labels": "wood;metal", "negatives": "glass"},
        {"path": "b.jpg", "split": "train", "labels": "glass"},
        {"path": "c.jpg", "split": "train", "labels": "wood", "negatives": "wood"},  # contradiction
        {"path": "d.jpg", "split": "train", "labels": ""},  # no labels
        {"path": "e.jpg", "split": "validation", "labels": "wood"},  # unknown split
        {"path": "f.jpg", "split": "test", "labels": "metal"},
        {"path": "g.jpg", "split": "test", "labels": "wood;glass"},
    ]
    _write_manifest(tmp_path, rows, kind)
    os.remove(tmp_path / "b.jpg")  # listed but missing
    index, messages = _load(str(tmp_path))
    assert index.source == "manifest" and index.class_names == ["glass", "metal", "wood"]
    assert index.train.names == ["a.jpg"]
    np.testing.assert_array_equal(index.train.observed_labels, [[-1, 1, 1]])
    assert index.test.names == ["f.jpg", "g.jpg"] and index.test_labels == "full"
    np.testing.assert_array_equal(index.test.full_labels, [[0, 1, 0], [1, 0, 1]])
    assert index.problem_counts() == {"skipped": {
        "unknown split": 1, "label both positive and negative": 1, "no labels": 1, "missing file": 1}}
    for name in ("b.jpg", "c.jpg", "d.jpg", "e.jpg"):
        assert sum(f"skipped {name}" in m for m in messages) == 1


def test_manifest_format_errors_name_the_file(tmp_path):
    (tmp_path / "m.csv").write_text("file,split\nx.jpg,train\n")
    with pytest.raises(ValueError, match=r"m.csv: the manifest needs the columns \['path', 'split', 'labels'\]"):
        load_index(str(tmp_path))
    (tmp_path / "n.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="several manifests"):
        load_index(str(tmp_path))
    # A test split left empty by skipped files is an error, not a NaN mAP later.
    _write_manifest(tmp_path / "empty_test", [{"path": "a.jpg", "split": "train", "labels": "x"},
                                              {"path": "b.jpg", "split": "test", "labels": "x"}])
    os.remove(tmp_path / "empty_test" / "b.jpg")
    with pytest.raises(ValueError, match=r"No usable test image .* Received: source='manifest'"):
        load_index(str(tmp_path / "empty_test"), warn=False)


def _build_tfds_voc(tmp_path, monkeypatch):
    """Prepares TFDS' voc/2012 from the fixture tree with TFDS' own builder, no download."""
    import tensorflow_datasets as tfds

    archives = tmp_path / "archives"
    trees.make_voc(archives)
    # The builder asks its download manager for the two VOC tars; hand it the extracted tree.
    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", lambda self, urls: {k: str(archives) for k in urls}
    )
    data_dir = tmp_path / "tfds"
    tfds.builder("voc/2012", data_dir=str(data_dir)).download_and_prepare()
    monkeypatch.undo()
    return str(data_dir), str(archives)


def test_tfds_voc_reads_prepared_data_only(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"tfds.builder\('voc/2012'.*DownloadConfig\(manual_dir=ARCHIVES\)"):
        load_index(str(tmp_path), source="tfds", dataset="voc2012")
    data_dir, archives = _build_tfds_voc(tmp_path, monkeypatch)
    assert detect_source(data_dir) == "tfds"
    index, messages = _load(data_dir)  # detected, and the one prepared dataset is used
    assert index.source == "tfds" and index.class_names == list(VOC_CLASSES) and not messages
    assert _labels_by_name(index, "train") == {k: trees.voc_labels(v) for k, v in trees.VOC_TRAIN.items()}
    assert _labels_by_name(index, "test") == {k: trees.voc_labels(v) for k, v in trees.VOC_VAL.items()}
    # Same pixels, labels and object boxes as the files, matched by name, whatever order TFDS stores them in.
    files = load_index(archives)
    file_objects = _objects_by_name(files, "test")
    for name, (boxes, classes) in _objects_by_name(index, "test").items():
        # TFDS divides VOC's 1-based xmin / ymin without the -1: up to one source pixel off.
        np.testing.assert_allclose(boxes, file_objects[name][0], atol=1 / 72 + 1e-6)
        np.testing.assert_allclose(boxes[:, 2:], file_objects[name][0][:, 2:], atol=1e-6)
        np.testing.assert_array_equal(classes, file_objects[name][1])
    tfds_pixels, file_pixels = _pixels(index.train), _pixels(files.train)
    for row, name in enumerate(index.train.names):
        file_row = files.train.names.index(f"JPEGImages/{name}")
        np.testing.assert_array_equal(tfds_pixels[row], file_pixels[file_row])
    shuffled = image_dataset(index.train, full_labels=index.train.full_labels, image_size=32, batch_size=64,
                             shuffle=True, seed=1)
    images, targets = next(iter(shuffled))
    order = targets["index"].numpy()
    assert sorted(order) == list(range(len(index.train)))
    np.testing.assert_array_equal(targets["full_labels"].numpy(), index.train.full_labels[order])
    np.testing.assert_array_equal(images.numpy(), tfds_pixels[order])


def test_tfds_coco_leaves_out_images_without_annotations(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    archives = trees.make_coco_archives(str(tmp_path / "archives"))
    monkeypatch.setattr(
        tfds.download.DownloadManager, "download_and_extract", lambda self, urls: {k: archives for k in urls}
    )
    tfds.builder("coco/2014", data_dir=str(tmp_path / "tfds")).download_and_prepare()
    monkeypatch.undo()
    index, messages = _load(str(tmp_path / "tfds"), source="tfds", dataset="coco2014")
    assert index.class_names == [c["name"] for c in trees.eighty_categories()]
    expected = {f"COCO_train2014_{i:012d}": trees.coco_labels(categories)
                for i, (_, categories) in enumerate(trees.COCO_IMAGES["train2014"], start=1)}
    assert _labels_by_name(index, "train") == expected
    assert len(index.test) == len(trees.COCO_IMAGES["val2014"])
    assert index.problem_counts() == {"left out": {"no annotations": 1}}
    assert any("COCO_train2014_000000000500.jpg: no annotations" in m for m in messages)
    assert _pixels(index.test).shape == (4, 32, 32, 3)


def test_nothing_recognisable_lists_every_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(FileNotFoundError) as error:
        load_index(str(tmp_path), dataset="custom")
    message = str(error.value)
    for looked_for in ("VOCdevkit/VOC2012", "instances_train2014.json", "train/<label>/<image>", "*.csv"):
        assert looked_for in message
    assert message.endswith(f"Received: data_dir={str(tmp_path)!r}")
