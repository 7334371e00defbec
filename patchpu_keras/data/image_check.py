"""The dataset checker: every file a source lists is decoded once before training.

Decoding errors inside a `tf.data` map stop training, so every file is decoded
once, before any dataset is built, by the function the pipeline uses
(`image_files.decode_image`). Files it cannot decode are skipped with a
warning naming them; files it decodes after a conversion (CMYK, grayscale,
alpha, 16-bit) are kept and reported. Results are cached per file (path, size,
modification time), so a second run does not decode anything again.
"""

import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import sys
import time
import warnings

import tensorflow as tf

from patchpu_keras.data.image_files import DECODE_ERRORS, decode_error_message, decode_image, read_bytes

# Warnings naming files: at most this many per reason, then one line with the rest.
MAX_NAMED_WARNINGS = 10
CACHE_VERSION = 1
# A progress bar is shown (on stderr) when at least this many files need decoding.
PROGRESS_MIN_FILES = 500


def conversion(data):
    """What decoding to 8-bit RGB changes in this image, or None.

    Returns one of "CMYK converted to RGB", "grayscale converted to RGB",
    "alpha channel dropped", "16-bit converted to 8-bit", "palette converted to
    RGB", or None for 8-bit RGB (and formats other than JPEG and PNG).
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        bit_depth, color_type = data[24], data[25]
        if bit_depth == 16:
            return "16-bit converted to 8-bit"
        if color_type in (4, 6):
            return "alpha channel dropped"
        if color_type == 0:
            return "grayscale converted to RGB"
        if color_type == 3:
            return "palette converted to RGB"
        return None
    if data[:2] == b"\xff\xd8":
        from PIL import Image

        try:
            mode = Image.open(io.BytesIO(data)).mode
        except Exception:  # the decode check reports unreadable files
            return None
        if mode == "CMYK":
            return "CMYK converted to RGB"
        if mode in ("L", "1", "I", "F"):
            return "grayscale converted to RGB"
    return None


def check_image_bytes(data):
    """Decodes `data` as the pipeline will.

    Returns:
        `(ok, reason, detail)`: `ok` is False when the pipeline cannot decode
        the bytes, with `reason` a short category ("empty file", "not an image",
        "corrupt or truncated image") and `detail` the decoder's message; when
        `ok`, `reason` is the `conversion` applied, or None.
    """
    if not data:
        return False, "empty file", "0 bytes"
    try:
        image = decode_image(tf.constant(data))
    except DECODE_ERRORS as error:
        message = decode_error_message(error)
        if "Unknown image file format" in message:
            return False, "not an image", message
        return False, "corrupt or truncated image", message
    if image.shape[0] == 0 or image.shape[1] == 0:
        return False, "corrupt or truncated image", f"decoded to shape {tuple(image.shape)}"
    return True, conversion(data), None


def default_cache_dir():
    """`$PATCHPU_CACHE_DIR`, else `~/.cache/patchpu_keras`."""
    return os.environ.get("PATCHPU_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "patchpu_keras"
    )


def _cache_key(file, byte_range):
    return file if byte_range is None else f"{file}@{int(byte_range[0])}+{int(byte_range[1])}"


class _Progress:
    """A `keras.utils.Progbar` of files checked, on stderr (stdout may carry JSON)."""

    def __init__(self, total, cached):
        import keras

        self.total, self.cached, self.done, self.start = total, cached, 0, time.time()
        print(f"Decode-checking {total} image files ({cached} known from the cache)...", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):
            self.bar = keras.utils.Progbar(total, unit_name="file")

    def advance(self):
        self.done += 1
        if self.done % 50 == 0 or self.done == self.total:
            with contextlib.redirect_stdout(sys.stderr):
                self.bar.update(self.done)

    def close(self):
        print(f"Checked {self.total} image files in {time.time() - self.start:.0f} s.", file=sys.stderr)


def check_image_files(files, byte_ranges=None, cache_name=None, cache_dir=None, workers=None, progress=None):
    """Checks many image files in parallel, with a cache.

    Args:
        files: list of paths.
        byte_ranges: optional list of `(offset, length)` or None per file.
        cache_name: str naming the cache file (e.g. the dataset root); None
            disables the cache.
        cache_dir: directory of the cache; defaults to `default_cache_dir()`.
        workers: threads; defaults to the CPU count.
        progress: bool, show a progress bar and a count on stderr; None
            (default): when `PROGRESS_MIN_FILES` or more files are not in the cache.

    Returns:
        One dict per file: `ok`, `reason`, `detail` (see `check_image_bytes`)
        and `sha1`, the hash of its content (None when unreadable). A file that
        does not exist gives `ok=False, reason="missing file"`.
    """
    byte_ranges = byte_ranges if byte_ranges is not None else [None] * len(files)
    cache, cache_path = {}, None
    if cache_name is not None:
        directory = cache_dir or default_cache_dir()
        digest = hashlib.sha1(os.path.abspath(cache_name).encode()).hexdigest()[:16]
        cache_path = os.path.join(directory, f"image_checks-{digest}.json")
        try:
            with open(cache_path) as handle:
                stored = json.load(handle)
            if stored.get("version") == CACHE_VERSION:
                cache = stored["entries"]
        except (OSError, ValueError, KeyError):
            cache = {}

    def key_and_stamp(file, byte_range):
        key = _cache_key(file, byte_range)
        try:
            stat = os.stat(file)
        except OSError:
            return key, None
        return key, [stat.st_size, stat.st_mtime_ns]

    def check(item):
        file, byte_range = item
        key, stamp = key_and_stamp(file, byte_range)
        if stamp is None:
            return key, None, {"ok": False, "reason": "missing file", "detail": "no such file", "sha1": None}
        cached = cache.get(key)
        if cached is not None and cached["stamp"] == stamp:
            return key, stamp, cached["result"]
        try:
            data = read_bytes(file, byte_range)
        except OSError as error:
            return key, stamp, {"ok": False, "reason": "unreadable file", "detail": str(error), "sha1": None}
        ok, reason, detail = check_image_bytes(data)
        result = {"ok": ok, "reason": reason, "detail": detail, "sha1": hashlib.sha1(data).hexdigest()}
        return key, stamp, result

    # Counted by name (a cached entry whose file changed is decoded again, uncounted).
    cached = sum(
        _cache_key(file, byte_range) in cache for file, byte_range in zip(files, byte_ranges)
    )
    if progress is None:
        progress = len(files) - cached >= PROGRESS_MIN_FILES
    bar = _Progress(len(files), cached) if progress else None
    workers = workers or min(8, os.cpu_count() or 1)
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for outcome in pool.map(check, zip(files, byte_ranges)):
            outcomes.append(outcome)
            if bar is not None:
                bar.advance()
    if bar is not None:
        bar.close()
    if cache_path is not None:
        for key, stamp, result in outcomes:
            if stamp is not None:
                cache[key] = {"stamp": stamp, "result": result}
        os.makedirs(os.path.dirname(cache_path), exist_ok=True)
        temporary = f"{cache_path}.{os.getpid()}.tmp"
        with open(temporary, "w") as handle:
            json.dump({"version": CACHE_VERSION, "entries": cache}, handle)
        os.replace(temporary, cache_path)
    return [result for _, _, result in outcomes]


def warn_problems(problems, source):
    """One warning per problem naming its file, at most `MAX_NAMED_WARNINGS` per reason.

    Args:
        problems: list of `FileProblem`s.
        source: str prefixed to every message (e.g. "VOC 2012").
    """
    by_reason = {}
    for problem in problems:
        by_reason.setdefault((problem.action, problem.reason), []).append(problem)
    for (action, reason), group in by_reason.items():
        for problem in group[:MAX_NAMED_WARNINGS]:
            detail = f" ({problem.detail})" if problem.detail else ""
            warnings.warn(f"{source}: {action} {problem.name}: {reason}{detail}", stacklevel=3)
        if len(group) > MAX_NAMED_WARNINGS:
            warnings.warn(
                f"{source}: {action} {len(group) - MAX_NAMED_WARNINGS} more files for the same "
                f"reason ({reason}); `python cli.py data summary` lists them all",
                stacklevel=3,
            )
