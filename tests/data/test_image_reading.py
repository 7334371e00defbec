import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from patchpu_keras.data.image_files import resize_image
from patchpu_keras.data.image_reader import UnreadableImageError, list_image_files, read_image


def test_folders_are_walked_for_images_and_files_kept_as_given(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "b/a.jpg", "c.jpeg", "notes.txt", "labels.csv"):
        (tmp_path / name).write_bytes(b"")
    explicit = str(tmp_path / "notes.txt")
    assert list_image_files([explicit, tmp_path, tmp_path / "missing.png"]) == [
        explicit,
        str(tmp_path / "b" / "a.jpg"),  # sorted by path
        str(tmp_path / "b" / "z.PNG"),
        str(tmp_path / "c.jpeg"),
        str(tmp_path / "missing.png"),
    ]


def test_png_decodes_to_the_exact_pixels_as_rgb(image_files):
    import skimage.data

    np.testing.assert_array_equal(read_image(image_files["chelsea.png"]), skimage.data.chelsea())
    camera = read_image(image_files["camera.png"])  # gray, repeated to 3 channels
    assert camera.shape == (512, 512, 3) and camera.dtype == np.uint8
    np.testing.assert_array_equal(camera, np.repeat(skimage.data.camera()[..., None], 3, axis=-1))
    rgba = read_image(image_files["coffee_rgba.png"])  # alpha dropped
    np.testing.assert_array_equal(rgba, skimage.data.coffee()[:40, :60])
    jpeg = read_image(image_files["astronaut.jpg"])  # lossy, but close
    assert jpeg.shape == (512, 512, 3)
    assert np.abs(jpeg.astype(int) - skimage.data.astronaut()).mean() < 3


def test_resize_is_bilinear_float_and_exact_at_the_same_size():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    same = resize_image(image, 4)
    assert same.dtype == tf.float32
    np.testing.assert_array_equal(resize_image(image[:, :4], 4).numpy(), image[:, :4].astype(np.float32))
    # Halving a 4x4 is the 2x2 block mean with half-pixel centres.
    half = resize_image(image[:, :4], 2).numpy()
    np.testing.assert_allclose(half[0, 0], image[:2, :2].reshape(-1, 3).mean(0), atol=1e-4)


def test_corrupt_missing_and_non_image_files_raise_with_their_path(tmp_path, image_files):
    jpeg = open(image_files["astronaut.jpg"], "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "empty.jpg").write_bytes(b"")
    png = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, "PNG")
    (tmp_path / "bad_header.png").write_bytes(b"\x00" + png.getvalue()[1:])
    expectations = {
        "truncated.jpg": "Invalid JPEG data",
        "text.png": "Unknown image file format",
        "empty.jpg": "the file is empty",
        "bad_header.png": "Unknown image file format",
        "missing.png": "No such file or directory",
        "": "Is a directory",
    }
    for name, reason in expectations.items():
        path = str(tmp_path / name)
        with pytest.raises(UnreadableImageError, match=reason) as raised:
            read_image(path)
        assert path in str(raised.value)
        assert "function_node" not in str(raised.value)
