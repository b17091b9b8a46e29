"""Procedural "dead leaves" images: sharp training sources that need no download.

Random shapes (disks, ellipses, rectangles) fall on top of each other. Their sizes follow a power
law p(r) ~ r^-3, which makes the image statistics scale invariant like natural images' (edges at
every scale, a 1/f^2-like spectrum); colours are muted and varied like photographs'; each shape
carries a linear shading gradient and some a striped texture, and shape edges are slightly soft
(anti-aliased) so the "sharp" image is not aliased.

`style="natural"` adds what that classic model lacks and photographs have (after the principles of
Achddou et al., "VibrantLeaves", 2025: micro-textures and a simple model of acquisition):
- stochastic micro-textures: most shapes carry a Gaussian random field with a 1/f^beta power
  spectrum (fur, foliage, grain), not only smooth shading or stripes;
- soft edges of every width: each shape's edge softness is drawn per shape, and the shapes behind
  a random depth are defocused together, so a sharp image holds soft edges beside crisp ones.
A network trained on crisp edges alone learns to sharpen every edge it sees, and over-sharpens
photos whose soft structures are already as sharp as they should be.

`style="textured"` is "natural" with texture on nearly every shape, finer on average (beta at
most 2.5), and half of the fields oriented (stretched along a random direction, like fur, grass
or wood grain). A network that seldom sees fine texture on a sharp image takes it for noise and
wipes it off: a near-sharp photo of fur comes out smoothed, several dB worse than it went in.
"""

import numpy as np

_SHAPES = ("disk", "ellipse", "rectangle")
STYLES = ("classic", "natural", "textured")
# Random-field textures per style: the share of shapes that carry one, its amplitude, the fields'
# spectral exponents and the largest stretch of an oriented field (1: isotropic only).
_TEXTURES = {"natural": {"probability": 0.6, "amplitude": (0.02, 0.2), "beta": (1.0, 3.0),
                         "max_stretch": 1.0},
             "textured": {"probability": 0.9, "amplitude": (0.03, 0.2), "beta": (1.0, 2.5),
                          "max_stretch": 8.0}}
_NOISE_FIELDS = 4  # fields per image, shared by its shapes
# Soft edges and the background's defocus (both non-classic styles).
_EDGE_SOFTNESS = (0.5, 3.0)
_DEFOCUS_PROBABILITY = 0.6
_DEFOCUS_SIGMA = (0.5, 3.0)


def check_style(style, argument="style"):
    """Raises ValueError, naming `argument`, unless `style` is one of `STYLES`."""
    if style not in STYLES:
        raise ValueError(f"{argument} must be one of {STYLES}, got {style!r}")


def _power_law_radii(rng, count, min_radius, max_radius, exponent):
    """Radii with density ~ r^-exponent on [min_radius, max_radius], by inverse transform."""
    u = rng.random(count)
    low, high = min_radius ** (1 - exponent), max_radius ** (1 - exponent)
    return (low + u * (high - low)) ** (1 / (1 - exponent))


def _hsv_to_rgb(hue, saturation, value):
    """Vectorised HSV -> RGB; inputs (N,) in [0, 1], output (N, 3)."""
    sector = np.floor(hue * 6) % 6
    fraction = hue * 6 - np.floor(hue * 6)
    p = value * (1 - saturation)
    q = value * (1 - saturation * fraction)
    t = value * (1 - saturation * (1 - fraction))
    table = np.stack([
        np.stack([value, t, p], -1), np.stack([q, value, p], -1), np.stack([p, value, t], -1),
        np.stack([p, q, value], -1), np.stack([t, p, value], -1), np.stack([value, p, q], -1),
    ])  # (6, N, 3)
    return table[sector.astype(int), np.arange(len(hue))]


def _natural_colours(rng, count):
    """(count, 3) RGB in [0, 1]: a few dominant hues per image, mostly low saturation."""
    palette = rng.random(rng.integers(3, 7))
    hue = (rng.choice(palette, count) + rng.normal(0, 0.04, count)) % 1.0
    saturation = 0.85 * rng.beta(1.2, 3.0, count)
    value = rng.beta(2.0, 1.6, count)
    return _hsv_to_rgb(hue, saturation, value)


def _smooth_background(rng, height, width, cell=48):
    """(height, width, 3) float32: random colours on a coarse grid, bilinearly interpolated."""
    grid = _natural_colours(rng, (height // cell + 2) * (width // cell + 2))
    grid = grid.reshape(height // cell + 2, width // cell + 2, 3)
    y = np.linspace(0, grid.shape[0] - 1.001, height)
    x = np.linspace(0, grid.shape[1] - 1.001, width)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _power_law_field(rng, height, width, beta, stretch=1.0, angle=0.0):
    """(height, width) float32 Gaussian random field with power spectrum ~ 1/f^beta, unit std.
    With `stretch` > 1 its structures are that many times longer along `angle` (radians)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    along = fy * np.sin(angle) + fx * np.cos(angle)
    across = fy * np.cos(angle) - fx * np.sin(angle)
    frequency = np.sqrt((along * stretch) ** 2 + across ** 2)
    frequency[0, 0] = 1.0  # the mean is removed below
    spectrum = np.fft.rfft2(rng.standard_normal((height, width))) * frequency ** (-beta / 2)
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(height, width))
    return (field / max(float(field.std()), 1e-8)).astype(np.float32)


def _gaussian_blur(image, sigma):
    """(H, W, C) image blurred by a Gaussian of `sigma` pixels, mirrored at the borders."""
    pad = int(np.ceil(3 * sigma))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    fy = np.fft.fftfreq(padded.shape[0])[:, None, None]
    fx = np.fft.rfftfreq(padded.shape[1])[None, :, None]
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    blurred = np.fft.irfft2(np.fft.rfft2(padded, axes=(0, 1)) * transfer, s=padded.shape[:2],
                            axes=(0, 1))
    return blurred[pad:pad + image.shape[0], pad:pad + image.shape[1]].astype(np.float32)


def dead_leaves_image(rng, height, width, *, min_radius=3.0, max_radius=None, exponent=3.0,
                      coverage=3.0, max_shapes=20000, edge_softness=0.8, texture_probability=0.3,
                      style="classic"):
    """Draws one dead-leaves image.

    Args:
        rng: np.random.Generator (the image depends only on its state).
        height, width: size in pixels.
        min_radius, max_radius: shape radius range in pixels (default max: 0.4 x shorter side).
        exponent: power-law exponent of the radius density (3 is scale invariant).
        coverage: total shape area / image area; 3 leaves almost no background showing.
        max_shapes: cap on the number of shapes.
        edge_softness: width in pixels of the soft edge (0 for hard, aliased edges).
        texture_probability: share of shapes with a striped texture.
        style: "classic" (the model above), "natural" (random-field textures, per-shape edge
            softness from 0.5 to 3 px, a defocused background) or "textured" (the same with
            denser, finer and oriented textures); see the module's docstring. "classic" draws
            exactly the images it always has for a given `rng`.

    Returns:
        (height, width, 3) uint8 sRGB image.
    """
    check_style(style)
    max_radius = 0.4 * min(height, width) if max_radius is None else max_radius
    max_radius = max(max_radius, min_radius * 1.01)
    # Expected shape area for the power law, to pick how many shapes give the wanted coverage.
    sample_radii = _power_law_radii(rng, 4096, min_radius, max_radius, exponent)
    count = int(min(max_shapes, coverage * height * width / (np.pi * np.mean(sample_radii ** 2))))

    radius = _power_law_radii(rng, count, min_radius, max_radius, exponent)
    kind = rng.integers(0, len(_SHAPES), count)
    aspect = np.where(kind == 0, 1.0, rng.uniform(0.3, 1.0, count))
    angle = rng.uniform(0, np.pi, count)
    centre_y = rng.uniform(-radius / 2, height + radius / 2)
    centre_x = rng.uniform(-radius / 2, width + radius / 2)
    colour = _natural_colours(rng, count)
    shading = rng.normal(0, 0.12, (count, 2, 3))  # colour change across the shape, per axis
    has_texture = rng.random(count) < texture_probability
    stripe_period = rng.uniform(2.5, 12.0, count)
    stripe_phase = rng.uniform(0, 2 * np.pi, count)
    stripe_amplitude = rng.uniform(0.03, 0.15, count)

    canvas = _smooth_background(rng, height, width)

    # The other styles draw after everything the classic one draws, so "classic" is unchanged.
    softness = np.full(count, edge_softness)
    noise_texture = np.zeros(count, bool)
    defocus_at, defocus_sigma = count, 0.0
    if style != "classic":
        textures = _TEXTURES[style]
        fields = []
        for _ in range(_NOISE_FIELDS):
            beta = rng.uniform(*textures["beta"])
            stretch, orientation = 1.0, 0.0
            if textures["max_stretch"] > 1 and rng.random() < 0.5:
                stretch = float(np.exp(rng.uniform(0, np.log(textures["max_stretch"]))))
                orientation = rng.uniform(0, np.pi)
            fields.append(_power_law_field(rng, height, width, beta, stretch, orientation))
        noise_texture = rng.random(count) < textures["probability"]
        noise_field = rng.integers(0, _NOISE_FIELDS, count)
        noise_amplitude = rng.uniform(*textures["amplitude"], count)
        noise_tint = 1.0 + rng.normal(0, 0.15, (count, 3))  # mostly luminance, a little colour
        softness = np.exp(rng.uniform(*np.log(_EDGE_SOFTNESS), count))
        if rng.random() < _DEFOCUS_PROBABILITY:  # the shapes behind this depth are out of focus
            defocus_at = int(count * rng.uniform(0.3, 0.9))
            defocus_sigma = rng.uniform(*_DEFOCUS_SIGMA)

    # Painter's algorithm, back to front: one vectorised update per shape, over its bounding box.
    for i in range(count):
        if i == defocus_at:
            canvas = _gaussian_blur(canvas, defocus_sigma)
        r_major = radius[i]
        reach = r_major + softness[i] + 1
        top = int(max(0, np.floor(centre_y[i] - reach)))
        bottom = int(min(height, np.ceil(centre_y[i] + reach)))
        left = int(max(0, np.floor(centre_x[i] - reach)))
        right = int(min(width, np.ceil(centre_x[i] + reach)))
        if top >= bottom or left >= right:
            continue
        dy = (np.arange(top, bottom, dtype=np.float32) + 0.5 - centre_y[i])[:, None]
        dx = (np.arange(left, right, dtype=np.float32) + 0.5 - centre_x[i])[None, :]
        cos, sin = np.cos(angle[i]), np.sin(angle[i])
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy
        r_minor = r_major * aspect[i]
        if kind[i] == 2:
            normalised = np.maximum(np.abs(u) / r_major, np.abs(v) / r_minor)
        else:
            normalised = np.sqrt((u / r_major) ** 2 + (v / r_minor) ** 2)
        # Signed distance to the edge (approximate), in pixels, turned into coverage.
        distance = (normalised - 1) * r_minor
        alpha = np.clip(0.5 - distance / max(softness[i], 1e-3), 0, 1)[..., None]
        paint = (colour[i] + (u / r_major)[..., None] * shading[i, 0]
                 + (v / r_major)[..., None] * shading[i, 1])
        if has_texture[i]:
            stripes = np.sin(2 * np.pi * u / stripe_period[i] + stripe_phase[i])
            paint = paint + stripe_amplitude[i] * stripes[..., None]
        if noise_texture[i]:
            grain = fields[noise_field[i]][top:bottom, left:right, None]
            paint = paint + noise_amplitude[i] * grain * noise_tint[i]
        region = canvas[top:bottom, left:right]
        region += alpha * (np.clip(paint, 0, 1) - region)
    return np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8)
