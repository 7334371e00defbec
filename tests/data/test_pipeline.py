import numpy as np
import pytest
import tensorflow as tf

from data import trees
from patchpu_keras.data import image_dataset, load_index, observe
from patchpu_keras.data.pipeline import load_image


@pytest.fixture
def voc(tmp_path):
    trees.make_voc(tmp_path)
    return load_index(str(tmp_path))


def _epoch(dataset):
    images, targets = [], {}
    for batch_images, batch_targets in dataset:
        images.append(batch_images.numpy())
        for key, value in batch_targets.items():
            targets.setdefault(key, []).append(value.numpy())
    return np.concatenate(images), {key: np.concatenate(value) for key, value in targets.items()}


def test_files_become_resized_rgb_images_with_their_labels_and_index(voc):
    train = voc.train
    observed = observe(train.full_labels, "single_positive")
    dataset = image_dataset(train, observed_labels=observed, full_labels=train.full_labels,
                            image_size=40, batch_size=3)
    assert [batch[0].shape[0] for batch in dataset] == [3, 3, 2]
    images, targets = _epoch(dataset)
    assert images.shape == (8, 40, 40, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.std() > 20
    np.testing.assert_array_equal(targets["index"], np.arange(8))
    np.testing.assert_array_equal(targets["observed_labels"], observed)
    np.testing.assert_array_equal(targets["full_labels"], train.full_labels)
    # The same function eagerly gives the same pixels, and they are the file's photo resized.
    for row, file in enumerate(train.files):
        eager = load_image(tf.io.read_file(file), 40).numpy()
        np.testing.assert_array_equal(images[row], eager)
        reference = tf.image.resize(trees.photo(row).astype("float32"), (40, 40)).numpy()
        assert np.abs(eager - reference).mean() < 4  # JPEG loss only
    # Full labels are only in the targets when given.
    assert set(next(iter(image_dataset(train, observed_labels=observed, image_size=8)))[1]) == {
        "observed_labels", "index"}


def test_shuffle_is_a_seeded_new_permutation_every_epoch(voc):
    def orders(seed):
        dataset = image_dataset(voc.train, full_labels=voc.train.full_labels, image_size=8, batch_size=8,
                                shuffle=True, seed=seed)
        return [_epoch(dataset)[1]["index"] for _ in range(3)]

    first, again = orders(1), orders(1)
    assert all(sorted(order) == list(range(8)) for order in first)
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_a_pipeline_started_at_epoch_k_gives_the_epochs_of_an_uninterrupted_one(rng, voc, tmp_path):
    # What a resumed run relies on: order and redraws of epochs 2, 3 without reading epochs 0, 1.
    full = (rng.random((8, 5)) < 0.5).astype("float32")
    full[:, 0] = 1

    def epochs(first_epoch, count):
        dataset = image_dataset(voc.train, redraw_positives_from=full, image_size=8, batch_size=8,
                                shuffle=True, seed=3, first_epoch=first_epoch)
        return [(lambda t: (t["index"], t["observed_labels"]))(_epoch(dataset)[1]) for _ in range(count)]

    uninterrupted, resumed = epochs(0, 4), epochs(2, 2)
    for (order, drawn), (order_again, drawn_again) in zip(uninterrupted[2:], resumed):
        np.testing.assert_array_equal(order, order_again)
        np.testing.assert_array_equal(drawn, drawn_again)
    assert not np.array_equal(uninterrupted[0][0], resumed[0][0])
    # In-memory arrays (the demo) too.
    from patchpu_keras.data.pipeline import array_dataset

    images = rng.integers(0, 256, (8, 4, 4, 3)).astype("uint8")

    def array_orders(first_epoch, count):
        dataset = array_dataset(images, full_labels=full, batch_size=8, shuffle=True, seed=3, first_epoch=first_epoch)
        return [_epoch(dataset)[1]["index"] for _ in range(count)]

    np.testing.assert_array_equal(np.stack(array_orders(0, 3)[1:]), np.stack(array_orders(1, 2)))


def test_flip_mirrors_images_and_keeps_labels(voc):
    plain, plain_targets = _epoch(image_dataset(voc.train, full_labels=voc.train.full_labels, image_size=16))
    flipped, targets = _epoch(image_dataset(voc.train, full_labels=voc.train.full_labels, image_size=16,
                                            flip=True, seed=0))
    mirrored = [np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain)]
    same = [np.array_equal(f, p) for f, p in zip(flipped, plain)]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored)
    np.testing.assert_array_equal(targets["full_labels"], plain_targets["full_labels"])


@pytest.mark.parametrize("on_disk", [False, True])
def test_cache_gives_the_same_images(voc, tmp_path, on_disk):
    cache = str(tmp_path / "cache") if on_disk else True
    plain, _ = _epoch(image_dataset(voc.train, full_labels=voc.train.full_labels, image_size=24))
    dataset = image_dataset(voc.train, full_labels=voc.train.full_labels, image_size=24, cache=cache,
                            shuffle=True, seed=2)
    for _ in range(2):  # the second epoch reads the cache
        images, targets = _epoch(dataset)
        np.testing.assert_array_equal(images, plain[targets["index"]])
    if on_disk:
        assert any(path.name.startswith("cache") for path in tmp_path.iterdir())


def test_redrawn_single_positives_change_every_epoch_reproducibly(rng, tmp_path):
    full = (rng.random((64, 6)) < 0.5).astype("float32")
    full[:, 0] = 1  # a positive in every image, most have several
    paths = []
    for row, image in enumerate(rng.integers(0, 255, (64, 8, 8, 3)).astype("uint8")):
        paths.append(str(tmp_path / f"{row}.png"))
        trees.write(paths[-1], trees.encode(image, "PNG"))

    def epochs(label_seed):
        dataset = image_dataset(paths, redraw_positives_from=full, image_size=8, batch_size=64,
                                shuffle=True, label_seed=label_seed)
        draws = []
        for _ in range(3):
            _, targets = _epoch(dataset)
            observed = np.zeros_like(full)
            observed[targets["index"]] = targets["observed_labels"]
            draws.append(observed)
        return draws, set(targets)

    draws, keys = epochs(1200)
    assert keys == {"observed_labels", "index"}  # the full labels stay out of the targets
    for observed in draws:
        assert np.all(observed.sum(1) == 1) and np.all(full[observed == 1] == 1)
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])
    again, _ = epochs(1200)
    np.testing.assert_array_equal(np.stack(draws), np.stack(again))
    assert not np.array_equal(draws[0], epochs(1)[0][0])
    with pytest.raises(ValueError, match="no positive in row 0"):
        image_dataset(paths[:1], redraw_positives_from=np.zeros((1, 6)))

