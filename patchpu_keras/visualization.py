"""Pictures: attention and class activation maps (the paper's Fig. 3), precision-recall curves."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL_SIZE = 224
CAPTION_HEIGHT = 22
TINT = np.array([255, 40, 0], dtype=np.float32)


def _rgb(image):
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=-1)
    return image[..., :3]


def _tinted_panels(image, tints, captions, panel_size):
    """Panels side by side: `image` tinted by each `(h, w)` map in [0, 1], a caption under each."""
    font = ImageFont.load_default()
    figure = Image.new("RGB", (panel_size * len(tints), panel_size + CAPTION_HEIGHT), "white")
    draw = ImageDraw.Draw(figure)
    for column, (tint, caption) in enumerate(zip(tints, captions)):
        alpha = 0.6 * tint[..., None]
        blended = (1 - alpha) * image + alpha * TINT
        panel = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).resize(
            (panel_size, panel_size), Image.NEAREST
        )
        figure.paste(panel, (column * panel_size, 0))
        draw.text((column * panel_size + 4, panel_size + 5), caption, fill="black", font=font)
    return figure


def _top_labels(probabilities, label_names, top_k):
    probabilities = np.asarray(probabilities)
    names = label_names or [str(i) for i in range(len(probabilities))]
    shown = np.argsort(-probabilities, kind="stable")[:top_k]
    return shown, [f"{names[label]}: {probabilities[label]:.2f}" for label in shown]


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
    image = _rgb(image)
    height, width = image.shape[:2]
    attention = np.asarray(attention)
    shown, captions = _top_labels(probabilities, label_names, top_k)
    selected = np.flatnonzero(np.asarray(levels) == level)
    tints = []
    for label in shown:
        weights = attention[label, selected]
        weights = weights / max(float(weights.max()), 1e-12)
        tint = np.zeros((height, width), dtype=np.float32)
        for weight, (top, left, bottom, right) in zip(weights, np.asarray(boxes)[selected]):
            rows = slice(int(round(top)), int(round(bottom)))
            cols = slice(int(round(left)), int(round(right)))
            tint[rows, cols] = np.maximum(tint[rows, cols], weight)
        tints.append(tint)
    return _tinted_panels(image, tints, captions, panel_size)


def cam_figure(image, probabilities, cam, label_names=None, top_k=3, panel_size=PANEL_SIZE):
    """One panel per top-scoring label: the image tinted by its class activation map.

    Args:
        image: `(h, w)` or `(h, w, c)` array, values in [0, 255].
        probabilities: `(L,)` scores.
        cam: `(map_h, map_w, L)` class activation maps (`CAMClassifier`'s
            `cam` output for one image), upsampled bilinearly over the image.
        label_names: optional list of L names.
        top_k: number of labels shown, highest probability first.
        panel_size: side of one panel in pixels.

    Returns:
        A `PIL.Image` like `attention_figure`'s; each map's positive part is
        scaled to [0, 1] by its maximum (a map without positive evidence
        leaves the image untinted).
    """
    image = _rgb(image)
    height, width = image.shape[:2]
    cam = np.asarray(cam, dtype=np.float32)
    shown, captions = _top_labels(probabilities, label_names, top_k)
    tints = []
    for label in shown:
        evidence = np.maximum(cam[..., label], 0.0)
        evidence = evidence / max(float(evidence.max()), 1e-12)
        upsampled = Image.fromarray(evidence).resize((width, height), Image.BILINEAR)
        tints.append(np.clip(np.asarray(upsampled), 0.0, 1.0))
    return _tinted_panels(image, tints, captions, panel_size)


PLOT_SIZE = (640, 480)
# Best classes in cool colours, worst in warm ones.
CURVE_COLOURS = {
    "best": [(31, 119, 180), (44, 160, 44), (23, 190, 207)],
    "worst": [(214, 39, 40), (255, 127, 14), (227, 119, 194)],
}


def precision_recall_figure(curves, title="", size=PLOT_SIZE):
    """Precision-recall curves on one plot, with a legend of names and APs.

    Args:
        curves: list of dicts with `name`, `ap`, `precision` and `recall`
            (arrays, as `evaluation.precision_recall_curve` returns them) and
            `group` (`"best"` or `"worst"`, which picks the colour family).
        title: str drawn above the plot.
        size: `(width, height)` of the picture.

    Returns:
        A `PIL.Image`: recall on x, precision on y, both from 0 to 1, grid every
        0.2; each curve starts at recall 0 with the precision of the highest
        threshold.
    """
    width, height = size
    left, right, top, bottom = 56, 190, 36, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    figure = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default()

    def to_pixel(recall, precision):
        return left + recall * plot_w, top + (1.0 - precision) * plot_h

    for tick in np.linspace(0, 1, 6):
        x, y = to_pixel(tick, tick)
        draw.line([(x, top), (x, top + plot_h)], fill=(225, 225, 225))
        draw.line([(left, y), (left + plot_w, y)], fill=(225, 225, 225))
        draw.text((x - 8, top + plot_h + 6), f"{tick:.1f}", fill="black", font=font)
        draw.text((left - 28, y - 6), f"{tick:.1f}", fill="black", font=font)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    draw.text((left + plot_w / 2 - 18, height - 18), "recall", fill="black", font=font)
    draw.text((6, top - 24), "precision", fill="black", font=font)
    draw.text((left, 8), title, fill="black", font=font)

    used = {"best": 0, "worst": 0}
    legend_y = top
    for group_name in ("best", "worst"):
        group = [curve for curve in curves if curve.get("group", "best") == group_name]
        if not group:
            continue
        draw.text((left + plot_w + 12, legend_y), f"{group_name} classes", fill="black", font=font)
        legend_y += 16
        for curve in group:
            palette = CURVE_COLOURS[group_name]
            colour = palette[used[group_name] % len(palette)]
            used[group_name] += 1
            recall = np.r_[0.0, np.asarray(curve["recall"], dtype=float)]
            precision = np.asarray(curve["precision"], dtype=float)
            precision = np.r_[precision[:1], precision]
            points = [to_pixel(r, p) for r, p in zip(recall, precision) if np.isfinite(r)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            draw.line([(left + plot_w + 12, legend_y + 6), (left + plot_w + 32, legend_y + 6)],
                      fill=colour, width=3)
            draw.text((left + plot_w + 38, legend_y), f"{curve['name'][:18]} (AP {curve['ap']:.3f})",
                      fill="black", font=font)
            legend_y += 16
        legend_y += 8
    return figure
