import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data.trees import encode, photo
from patchpu_keras.data import image_check
from patchpu_keras.data.file_problem import FileProblem
from patchpu_keras.data.image_check import check_image_bytes, check_image_files, warn_problems
from patchpu_keras.data.image_files import decode_image


def _decode_both_ways(data):
    eager = decode_image(tf.constant(data)).numpy()
    graph = next(iter(tf.data.Dataset.from_tensors(tf.constant(data)).map(decode_image))).numpy()
    np.testing.assert_array_equal(eager, graph)
    assert eager.dtype == np.uint8 and eager.shape == (72, 96, 3)
    return eager


def test_every_channel_layout_decodes_to_rgb_eagerly_and_in_tf_data():
    rgb = photo(0)
    gray = encode(rgb, "PNG", mode="L")
    gray_levels = np.asarray(Image.fromarray(rgb).convert("L"))  # Pillow's gray levels

    np.testing.assert_array_equal(_decode_both_ways(encode(rgb, "PNG")), rgb)
    # Alpha is dropped, the colour kept exactly.
    np.testing.assert_array_equal(_decode_both_ways(encode(rgb, "PNG", mode="RGBA")), rgb)
    # Gray (1 channel) and gray + alpha are repeated to 3 equal channels.
    for data in (gray, encode(rgb, "PNG", mode="LA")):
        decoded = _decode_both_ways(data)
        np.testing.assert_array_equal(decoded, np.repeat(gray_levels[..., None], 3, -1))
    # 16-bit gray is scaled to 8 bits: 257 * v -> v.
    decoded = _decode_both_ways(encode(rgb[..., 0].astype(np.uint16) * 257, "PNG"))
    np.testing.assert_array_equal(decoded[..., 1], rgb[..., 0])
    # CMYK JPEGs are converted back to RGB, up to JPEG loss.
    cmyk = _decode_both_ways(encode(rgb, mode="CMYK", quality=95))
    reference = _decode_both_ways(encode(rgb, quality=95))
    assert np.abs(cmyk.astype(int) - rgb).mean() < 6
    assert np.abs(reference.astype(int) - rgb).mean() < 6


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: encode(photo(1)), None),
        (lambda: encode(photo(1), mode="CMYK"), "CMYK converted to RGB"),
        (lambda: encode(photo(1), mode="L"), "grayscale converted to RGB"),
        (lambda: encode(photo(1), "PNG", mode="RGBA"), "alpha channel dropped"),
        (lambda: encode(photo(1), "PNG", mode="P"), "palette converted to RGB"),
        (lambda: encode(photo(1)[..., 0].astype(np.uint16) * 257, "PNG"), "16-bit converted to 8-bit"),
    ],
)
def test_readable_images_report_their_conversion(make, reason):
    assert check_image_bytes(make()) == (True, reason, None)


def test_unreadable_bytes_are_named_not_decoded():
    good = encode(photo(2))
    assert check_image_bytes(b"") == (False, "empty file", "0 bytes")
    ok, reason, detail = check_image_bytes(good[: len(good) // 2])
    assert not ok and reason == "corrupt or truncated image" and "JPEG" in detail
    ok, reason, _ = check_image_bytes(good[:-10])  # only the end missing
    assert not ok and reason == "corrupt or truncated image"
    assert check_image_bytes(b"taken in 2021")[:2] == (False, "not an image")
    # What the check rejects is exactly what would stop a tf.data pipeline.
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image(tf.constant(good[: len(good) // 2]))


def test_file_checks_cache_results_until_the_file_changes(tmp_path, monkeypatch):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(encode(photo(3)))
    bad.write_bytes(b"")
    files = [str(good), str(bad), str(tmp_path / "missing.jpg")]
    first = check_image_files(files, cache_name=str(tmp_path))
    assert [r["ok"] for r in first] == [True, False, False]
    assert [r["reason"] for r in first] == [None, "empty file", "missing file"]
    assert first[0]["sha1"] and first[2]["sha1"] is None

    def no_decoding(data):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(image_check, "check_image_bytes", no_decoding)
    assert check_image_files(files, cache_name=str(tmp_path)) == first
    # A changed file is checked again.
    bad.write_bytes(encode(photo(4)))
    os.utime(bad, ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded although cached"):
        check_image_files(files, cache_name=str(tmp_path))
    monkeypatch.undo()
    monkeypatch.setenv("PATCHPU_CACHE_DIR", str(tmp_path / "cache"))
    assert check_image_files(files, cache_name=str(tmp_path))[1]["ok"]


def test_many_files_show_a_progress_bar_and_a_count_on_stderr(tmp_path, monkeypatch, capsys):
    files = []
    for number in range(4):
        files.append(str(tmp_path / f"photo{number}.jpg"))
        (tmp_path / f"photo{number}.jpg").write_bytes(encode(photo(number)))
    monkeypatch.setattr(image_check, "PROGRESS_MIN_FILES", 4)
    assert all(r["ok"] for r in check_image_files(files, cache_name=str(tmp_path)))
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays clean for `data summary --json`
    assert "Decode-checking 4 image files (0 known from the cache)" in err
    assert "4/4" in err and "Checked 4 image files" in err
    # The second time every file is in the cache: nothing to wait for, no bar.
    check_image_files(files, cache_name=str(tmp_path))
    assert capsys.readouterr() == ("", "")
    # Below the threshold there is no bar either, unless asked for.
    check_image_files(files[:3])
    assert capsys.readouterr().err == ""
    check_image_files(files[:3], progress=True)
    assert "3/3" in capsys.readouterr().err


def test_warnings_name_files_and_are_capped_per_reason():
    problems = [FileProblem(f"img{i}.jpg", "train", "skipped", "empty file", "0 bytes")
                for i in range(image_check.MAX_NAMED_WARNINGS + 5)]
    problems.append(FileProblem("cmyk.jpg", "train", "converted", "CMYK converted to RGB"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_problems(problems, "test")
    messages = [str(w.message) for w in caught]
    assert "test: skipped img0.jpg: empty file (0 bytes)" in messages
    assert "test: converted cmyk.jpg: CMYK converted to RGB" in messages
    assert len(messages) == image_check.MAX_NAMED_WARNINGS + 2
    assert any("5 more files for the same reason (empty file)" in m for m in messages)
