"""Pictures of the multi-head answer: a colour map for the spread across heads and contact sheets.

    outputs = inference.restore(model, blurry, which="all")          # (K', H, W, 3)
    sheet = contact_sheet(blurry, outputs)                             # uint8 (H', W', 3)

NumPy and Pillow only (labels use Pillow's built-in font; no font files needed).
"""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_mhdeblur.data.io import to_uint8

# Control points of a perceptually ordered dark-to-bright map (close to matplotlib's "magma").
_MAGMA = np.array([
    [0.001, 0.000, 0.014], [0.112, 0.065, 0.276], [0.316, 0.071, 0.485], [0.512, 0.128, 0.507],
    [0.716, 0.215, 0.475], [0.904, 0.346, 0.378], [0.986, 0.555, 0.379], [0.996, 0.772, 0.522],
    [0.987, 0.991, 0.750]], np.float32)


def colormap(values, vmax=None):
    """(H, W) non-negative values -> uint8 (H, W, 3): dark = 0, bright = `vmax` (default: the
    99th percentile, so a few outliers do not wash the map out)."""
    values = np.asarray(values, np.float32)
    if vmax is None:
        vmax = float(np.percentile(values, 99)) if values.size else 1.0
    scaled = np.clip(values / max(vmax, 1e-8), 0.0, 1.0) * (len(_MAGMA) - 1)
    low = np.floor(scaled).astype(np.int32)
    high = np.minimum(low + 1, len(_MAGMA) - 1)
    fraction = (scaled - low)[..., None]
    colours = _MAGMA[low] * (1 - fraction) + _MAGMA[high] * fraction
    return np.round(colours * 255).astype(np.uint8)


def _panel(image, label, panel_size):
    """One labelled panel, downscaled so its longer side is at most `panel_size`."""
    image = np.asarray(image)
    picture = Image.fromarray(image if image.dtype == np.uint8 else to_uint8(image))
    scale = panel_size / max(picture.size)
    if scale < 1:
        picture = picture.resize((max(1, round(picture.width * scale)),
                                  max(1, round(picture.height * scale))), Image.Resampling.LANCZOS)
    if label:
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default()
        left, top, right, bottom = draw.textbbox((2, 1), label, font=font)
        draw.rectangle((0, 0, right + 2, bottom + 1), fill=(0, 0, 0))
        draw.text((2, 1), label, fill=(255, 255, 255), font=font)
    return np.asarray(picture)


def contact_sheet(blurry, outputs, labels=None, spread=True, extra=(), columns=None,
                  panel_size=384, gap=4):
    """The blurry input, every output and the per-pixel spread across outputs in one image.

    Args:
        blurry: (H, W, 3) input, float in [0, 1] or uint8.
        outputs: (K', H, W, 3) restored outputs (or (H, W, 3) for a single one).
        labels: one label per output (default "out 0", "out 1", ...).
        spread: add the spread map (`inference.spread_map`, bright = heads disagree) when there
            are several outputs.
        extra: more (label, image) panels after the outputs (e.g. the sharp target); they do
            not enter the spread map.
        columns: panels per row (default: about square).
        panel_size: longest side of a panel in pixels; larger images are downscaled.
        gap: pixels between panels.

    Returns:
        uint8 (H', W', 3) sheet.
    """
    from keras_mhdeblur.inference import spread_map

    outputs = np.asarray(outputs)
    if outputs.ndim == 3:
        outputs = outputs[None]
    labels = labels or [f"out {index}" for index in range(len(outputs))]
    panels = [_panel(blurry, "input", panel_size)]
    panels += [_panel(output, label, panel_size) for output, label in zip(outputs, labels)]
    panels += [_panel(image, label, panel_size) for label, image in extra]
    if spread and len(outputs) > 1:
        panels.append(_panel(colormap(spread_map(outputs)), "spread across heads", panel_size))
    columns = columns or int(np.ceil(np.sqrt(len(panels))))
    rows = int(np.ceil(len(panels) / columns))
    height, width = panels[0].shape[:2]
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255,
                    np.uint8)
    for index, panel in enumerate(panels):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        sheet[top:top + panel.shape[0], left:left + panel.shape[1]] = panel
    return sheet
