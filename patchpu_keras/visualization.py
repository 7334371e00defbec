"""Attention heat maps in the style of the paper's Fig. 3."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL_SIZE = 224
CAPTION_HEIGHT = 22
TINT = np.array([255, 40, 0], dtype=np.float32)


def attention_figure(
    image,
    probabilities,
    attention,
    boxes,
    levels,
    label_names=None,
    top_k=3,
    level=0,
    panel_size=PANEL_SIZE,
):
    """One panel per top-scoring label: each patch tinted by its attention.

    Args:
        image: `(h, w)` or `(h, w, c)` array, values in [0, 255].
        probabilities: `(L,)` scores.
        attention: `(L, num_patches)` attention weights (the model output).
        boxes: `(num_patches, 4)` patch boxes `(top, left, bottom, right)` in
            `image` pixel coordinates (`MultiResolutionPatches.patch_boxes`).
        levels: `(num_patches,)` resolution level of each patch.
        label_names: optional list of L names.
        top_k: number of labels shown, highest probability first.
        level: which resolution level is drawn (0, the finest, by default).
        panel_size: side of one panel in pixels.

    Returns:
        A `PIL.Image` with the panels side by side and `name: score` under each.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=-1)
    image = image[..., :3]
    height, width = image.shape[:2]
    probabilities = np.asarray(probabilities)
    attention = np.asarray(attention)
    names = label_names or [str(i) for i in range(len(probabilities))]
    shown = np.argsort(-probabilities)[:top_k]
    selected = np.flatnonzero(np.asarray(levels) == level)
    font = ImageFont.load_default()
    figure = Image.new("RGB", (panel_size * len(shown), panel_size + CAPTION_HEIGHT), "white")
    for column, label in enumerate(shown):
        weights = attention[label, selected]
        weights = weights / max(float(weights.max()), 1e-12)
        tint = np.zeros((height, width), dtype=np.float32)
        for weight, (top, left, bottom, right) in zip(weights, np.asarray(boxes)[selected]):
            rows = slice(int(round(top)), int(round(bottom)))
            cols = slice(int(round(left)), int(round(right)))
            tint[rows, cols] = np.maximum(tint[rows, cols], weight)
        alpha = 0.6 * tint[..., None]
        blended = (1 - alpha) * image + alpha * TINT
        panel = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).resize(
            (panel_size, panel_size), Image.NEAREST
        )
        figure.paste(panel, (column * panel_size, 0))
        draw = ImageDraw.Draw(figure)
        draw.text(
            (column * panel_size + 4, panel_size + 5),
            f"{names[label]}: {probabilities[label]:.2f}",
            fill="black",
            font=font,
        )
    return figure
