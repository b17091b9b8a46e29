"""GoPro-style synthetic motion blur from any sharp image, with no download.

GoPro's blurry images average consecutive high-speed video frames of a hand-held camera; the
sharp label is the middle frame. Here, a random camera shake (`random_camera_trajectory`: small
translation and in-plane rotation, non-uniform speed) or a steady motion (`steady_camera_trajectory`:
nearly constant velocity, a gentle turn, as over GoPro's few tens of milliseconds) gives N
sub-frame poses; the sharp image is
warped to every pose at once (vectorised bilinear sampling), the sub-frames are averaged in linear
light (exact sRGB curves undone, then redone), and noise or JPEG re-compression can be added to the
blurry image. The label is the middle sub-frame (`label="middle"`, GoPro) or a random one
(`label="random"`, ambiguous labels: where a multi-head model helps most;
docs/method.md, "Small-scale runs"). The label sub-frame is the camera's reference pose, so it is
an exact crop of the source.

`SyntheticPairs` turns a sharp source (`sources.py`) into an endless, seeded stream of pairs;
`make_synthetic_set` and `write_synthetic_set` make fixed sets. This module is NumPy and Pillow
only: `pipeline.py` turns a stream into batches for training (`synthetic_dataset` for tf.data,
`SyntheticPyDataset` for any backend), so the dependency runs one way, pipeline -> synthetic.
"""

import io
import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from keras_mhdeblur.data.io import DataError, IMAGE_EXTENSIONS, to_uint8, write_png
from keras_mhdeblur.data.sources import BuiltinSource, FolderSource
from keras_mhdeblur.utils.files import write_json

LABELS = ("middle", "random")
LENGTH_SCALES = ("linear", "log")


def srgb_to_linear(srgb):
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1), same shape, float32."""
    srgb = np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0)
    curve = np.power((srgb + np.float32(0.055)) / np.float32(1.055), np.float32(2.4))
    return np.where(srgb <= 0.04045, srgb / np.float32(12.92), curve).astype(np.float32)


def linear_to_srgb(linear):
    """Linear light in [0, 1] -> sRGB-encoded values (IEC 61966-2-1), same shape, float32."""
    linear = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    curve = np.float32(1.055) * np.power(linear, np.float32(1 / 2.4)) - np.float32(0.055)
    return np.where(linear <= 0.0031308, linear * np.float32(12.92), curve).astype(np.float32)


# Exact decoding of 8-bit sources, computed in float64 once.
_SRGB8_TO_LINEAR = np.where(
    np.arange(256) / 255 <= 0.04045, np.arange(256) / 255 / 12.92,
    ((np.arange(256) / 255 + 0.055) / 1.055) ** 2.4).astype(np.float32)


HIGHLIGHT_KNEE = 0.7  # linear light above which `boost_highlights` raises the scene


def boost_highlights(linear, gain):
    """Scene radiance from a display-referred image: values above `HIGHLIGHT_KNEE` rise smoothly
    (quadratically from the knee, so with no kink) to `gain` times their value at 1.

    Sources are 8-bit photos whose bright parts are already clipped at white; a real scene is
    brighter there, and blur spreads that energy. Output float32, may exceed 1.
    """
    excess = np.maximum(linear - np.float32(HIGHLIGHT_KNEE), 0) / np.float32(1 - HIGHLIGHT_KNEE)
    return (linear * (1 + np.float32(gain - 1) * excess * excess)).astype(np.float32)


def random_camera_trajectory(rng, num_subframes, length, rotation, *, steps=64, inertia=0.9,
                             drift=2.0, jerk_probability=0.05, jerk_strength=4.0):
    """Camera shake during one exposure: a random walk with inertia (after Boracchi & Foi 2012).

    The camera's velocity is a steady drift (a pan, random direction, size ~ `drift`) plus a part
    that keeps a share `inertia` of itself each time step and receives unit Gaussian kicks,
    occasionally a strong jerk (x `jerk_strength`). Sub-frames are taken at equal
    times, so they bunch up where the camera moves slowly (non-uniform speed). In-plane rotation is
    a second such walk. The path is scaled to `length` pixels of travel and the rotation to a range
    (largest minus smallest angle) of `rotation` radians.

    Args:
        rng: np.random.Generator.
        num_subframes: N, the number of sub-frames.
        length: path length in pixels (0 for no translation).
        rotation: range of the rotation angle in radians (0 for none).

    Returns:
        (shifts, angles): (N, 2) camera positions (dy, dx) in pixels and (N,) angles in radians.
    """
    powers = inertia ** np.subtract.outer(np.arange(steps), np.arange(steps))
    decay = np.tril(powers)  # velocity_t = sum_s inertia^(t-s) kick_s: the inertia recursion at once

    def walk(dimensions):
        kicks = rng.normal(size=(steps, dimensions))
        jerks = rng.random((steps, 1)) < jerk_probability
        kicks = kicks + jerks * rng.normal(size=(steps, dimensions)) * jerk_strength
        velocity = decay @ kicks + rng.normal(size=dimensions) * drift
        return np.concatenate([np.zeros((1, dimensions)), np.cumsum(velocity, axis=0)])

    path = _scaled_to_length(walk(2), length)
    spin = walk(1)[:, 0]
    spread = np.ptp(spin)
    spin = spin * (rotation / spread) if spread > 0 else spin * 0
    return _at_subframes(path, num_subframes), _at_subframes(spin[:, None], num_subframes)[:, 0]


def _scaled_to_length(path, length):
    """A (T + 1, 2) path scaled to `length` pixels of travel (a still camera for 0)."""
    travelled = np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))
    return path * (length / travelled) if travelled > 0 else path * 0


def _at_subframes(values, num_subframes):
    """(T + 1, D) values at time steps 0..T -> (N, D) at N equal times from 0 to T (the
    sub-frames of one exposure), linearly interpolated."""
    grid = np.arange(len(values))
    times = np.linspace(0, len(values) - 1, num_subframes)
    return np.stack([np.interp(times, grid, column) for column in values.T], axis=1)


def steady_camera_trajectory(rng, num_subframes, length, rotation, *, max_turn_degrees=30.0,
                             speed_change=0.5, steps=64):
    """A steady camera motion during one exposure: nearly constant velocity.

    A hand-held camera over the few tens of milliseconds that GoPro's blurry frames average
    moves almost in a straight line at almost constant speed: the heading turns at a constant
    rate by up to `max_turn_degrees` in all, the speed changes linearly, ending between
    1 - `speed_change` and 1 + `speed_change` times its starting value, and the in-plane rotation
    turns at a constant rate through `rotation` radians. At constant speed the middle sub-frame
    (GoPro's label) sits at the centre of the smear, so the blur says where the label is; the
    shake of `random_camera_trajectory`, with its jerks and changes of pace, often leaves it
    several pixels off (docs/presets.md, "Where the label sits in the smear").

    Args and returns: as `random_camera_trajectory`.
    """
    progress = np.linspace(0, 1, steps + 1)  # time through the exposure
    heading = rng.uniform(0, 2 * math.pi) + math.radians(
        rng.uniform(-max_turn_degrees, max_turn_degrees)) * progress
    speed = 1 + (rng.uniform(1 - speed_change, 1 + speed_change) - 1) * progress
    velocity = np.stack([np.sin(heading), np.cos(heading)], axis=1) * speed[:, None]
    # Trapezoidal integration of the velocity over the time steps (its scale goes with the length).
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(velocity[1:] + velocity[:-1], axis=0)])
    spin = rotation * (progress - 0.5) * rng.choice([-1.0, 1.0])
    return (_at_subframes(_scaled_to_length(path, length), num_subframes),
            _at_subframes(spin[:, None], num_subframes)[:, 0])


def _draw(rng, value, integer=False):
    """A number from a fixed value or an inclusive (low, high) range."""
    if isinstance(value, (tuple, list)):
        low, high = value
        return int(rng.integers(low, high + 1)) if integer else float(rng.uniform(low, high))
    return value


@dataclass(frozen=True)
class BlurSettings:
    """How synthetic blur is made.

    Attributes:
        num_subframes: sub-frames per blurry image, an int or an inclusive (min, max) range.
        blur_extent: (min, max) length of the camera path, as a fraction of the shorter side of
            the output (0.12 of 256 pixels is a 31-pixel smear).
        max_rotation_degrees: largest range of in-plane rotation during an exposure.
        label: "middle" (the GoPro convention) or "random" (a random sub-frame).
        noise_sigma: standard deviation of Gaussian noise added to the blurry image, in [0, 1]
            sRGB units: a number or a (min, max) range; 0 for none.
        jpeg_quality: None, or a JPEG quality (or inclusive range) to re-compress the blurry image.
        blur_pixels: None, or a (min, max) camera-path length in pixels, used instead of
            `blur_extent`: real shake is a number of pixels of the photo, whatever the crop size
            (720p GoPro frames show up to tens of pixels).
        highlight_gain: 1 for none, else a gain (or (min, max) range) for the brightest parts of
            the scene: linear light above `HIGHLIGHT_KNEE` is raised smoothly to this many times
            its value at white, so that lamps and sky clip in the label and smear into bright,
            clipped streaks in the blurry image, as a real sensor integrates them.
        blur_length_scale: how a camera-path length is drawn from its range: "linear"
            (uniform in pixels) or "log" (uniform in log length: every octave, 2-4 px as much as
            16-32 px, gets the same share, so mild shake, the commonest in photos, is not rare;
            the range must then start above 0).
        steady_share: the share of pairs whose camera moves steadily (`steady_camera_trajectory`,
            GoPro-like; a straight smear as in scikit-image's clock photo) instead of shaking
            (`random_camera_trajectory`, the default for every pair).
    """

    num_subframes: int | tuple = (9, 15)
    blur_extent: tuple = (0.02, 0.12)
    max_rotation_degrees: float = 1.0
    label: str = "middle"
    noise_sigma: float | tuple = 0.0
    jpeg_quality: int | tuple | None = None
    blur_pixels: tuple | None = None
    highlight_gain: float | tuple = 1.0
    blur_length_scale: str = "linear"
    steady_share: float = 0.0

    def __post_init__(self):
        for field in dataclasses.fields(self):  # ranges read from JSON/YAML come as lists
            if isinstance(getattr(self, field.name), list):
                object.__setattr__(self, field.name, tuple(getattr(self, field.name)))
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        counts = self.num_subframes
        fewest = min(counts) if isinstance(counts, (tuple, list)) else counts
        if fewest < 1:
            raise ValueError(f"num_subframes must be at least 1, got {self.num_subframes}")
        if self.blur_pixels is not None and (len(self.blur_pixels) != 2
                                             or not 0 <= min(self.blur_pixels)):
            raise ValueError(f"blur_pixels must be a (min, max) pair of lengths >= 0, got "
                             f"{self.blur_pixels!r}")
        gains = self.highlight_gain
        if (min(gains) if isinstance(gains, (tuple, list)) else gains) < 1:
            raise ValueError(f"highlight_gain must be >= 1, got {self.highlight_gain!r}")
        if self.blur_length_scale not in LENGTH_SCALES:
            raise ValueError(f"blur_length_scale must be one of {LENGTH_SCALES}, got "
                             f"{self.blur_length_scale!r}")
        if not 0 <= self.steady_share <= 1:
            raise ValueError(f"steady_share must be in [0, 1], got {self.steady_share!r}")
        lengths = self.blur_pixels if self.blur_pixels is not None else self.blur_extent
        if self.blur_length_scale == "log" and not min(lengths) > 0:
            raise ValueError(f"blur_length_scale='log' needs a length range above 0, got "
                             f"{tuple(lengths)!r}")

    def path_length(self, rng, height, width):
        """A camera-path length in pixels for a (height, width) output."""
        if self.blur_length_scale == "log":
            low, high = (self.blur_pixels if self.blur_pixels is not None else
                         [extent * min(height, width) for extent in self.blur_extent])
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.blur_pixels is not None:
            return _draw(rng, tuple(self.blur_pixels))
        return _draw(rng, tuple(self.blur_extent)) * min(height, width)

    def margin(self, height, width):
        """Pixels a sub-frame can move a pixel by at most, +2 for bilinear sampling: the border
        of source around a (height, width) output that keeps every sub-frame fully defined."""
        half_diagonal = math.hypot(height, width) / 2
        travel = (max(self.blur_pixels) if self.blur_pixels is not None  # no point is farther
                  else max(self.blur_extent) * min(height, width))       # than the path length
        return int(math.ceil(travel + half_diagonal * math.radians(self.max_rotation_degrees))) + 2


class SyntheticPair(NamedTuple):
    """One synthetic pair; `pair[:2]` is (blurry, sharp).

    blurry, sharp: float32 (H, W, 3) sRGB in [0, 1].
    subframes: float32 (N, H, W, 3) sRGB sub-frames (with `return_subframes`), else None;
        `subframes[label_index]` equals `sharp` exactly.
    label_index: which sub-frame is the label.
    shifts, angles: the camera trajectory relative to the label pose, (N, 2) (dy, dx) pixels and
        (N,) radians.
    """

    blurry: np.ndarray
    sharp: np.ndarray
    subframes: np.ndarray | None
    label_index: int
    shifts: np.ndarray
    angles: np.ndarray


def _warp_subframes(planes, region_shape, output_shape, shifts, angles):
    """Samples every sub-frame pose from the source at once, bilinearly.

    Args:
        planes: (3, Hr * Wr) float32 source channels (linear light), the output centred inside.
        region_shape: (Hr, Wr).
        output_shape: (h, w).
        shifts, angles: (N, 2) (dy, dx) pixels, (N,) radians; rotation about the output centre.

    Returns:
        (3, N, h * w) float32 sub-frames.
    """
    (region_h, region_w), (height, width) = region_shape, output_shape
    ys = np.arange(height, dtype=np.float32) - np.float32((height - 1) / 2)
    xs = np.arange(width, dtype=np.float32) - np.float32((width - 1) / 2)
    cos = np.cos(angles).astype(np.float32)[:, None]
    sin = np.sin(angles).astype(np.float32)[:, None]
    offset_y = (shifts[:, 0] + (region_h - 1) / 2).astype(np.float32)[:, None]
    offset_x = (shifts[:, 1] + (region_w - 1) / 2).astype(np.float32)[:, None]
    # Source coordinates, (N, h, w): R(angle) (x, y) + shift + centre.
    source_x = (cos * xs + offset_x)[:, None, :] - (sin * ys)[:, :, None]
    source_y = (sin * xs + offset_y)[:, None, :] + (cos * ys)[:, :, None]
    x0, y0 = np.floor(source_x), np.floor(source_y)
    source_x -= x0  # now the bilinear weights
    source_y -= y0
    y0 *= region_w
    y0 += x0
    index = y0.astype(np.intp).ravel()  # flat index of the top-left neighbour
    fx, fy = source_x.ravel(), source_y.ravel()
    top_right, bottom_left, bottom_right = np.empty_like(fx), np.empty_like(fx), np.empty_like(fx)
    frames = np.empty((3, len(angles), height * width), np.float32)
    for channel in range(3):
        plane = planes[channel]
        top_left = frames[channel].reshape(-1)  # the result is built in place
        # Shifted views of the plane read the other three neighbours with the same index. The
        # margin keeps every index in range; mode="clip" only spares numpy a buffered copy.
        np.take(plane, index, out=top_left, mode="clip")
        np.take(plane[1:], index, out=top_right, mode="clip")
        np.take(plane[region_w:], index, out=bottom_left, mode="clip")
        np.take(plane[region_w + 1:], index, out=bottom_right, mode="clip")
        top_right -= top_left
        top_right *= fx
        top_left += top_right  # top row, interpolated
        bottom_right -= bottom_left
        bottom_right *= fx
        bottom_left += bottom_right  # bottom row
        bottom_left -= top_left
        bottom_left *= fy
        top_left += bottom_left
    return frames


def _linear_light(region):
    """sRGB (uint8 through an exact table, or float in [0, 1]) -> linear light."""
    return _SRGB8_TO_LINEAR[region] if region.dtype == np.uint8 else srgb_to_linear(region)


def _source_region(image, output_shape, margin):
    """The output-centred (h + 2 margin, w + 2 margin) region of `image`, mirrored where short."""
    height, width = output_shape
    top, left = (image.shape[0] - height) // 2 - margin, (image.shape[1] - width) // 2 - margin
    bottom, right = top + height + 2 * margin, left + width + 2 * margin
    pads = ((max(0, -top), max(0, bottom - image.shape[0])),
            (max(0, -left), max(0, right - image.shape[1])))
    if any(p for pair in pads for p in pair):
        image = np.pad(image, pads + ((0, 0),), mode="symmetric")
        top, left = top + pads[0][0], left + pads[1][0]
    return image[top:top + height + 2 * margin, left:left + width + 2 * margin]


def sharp_at_pose(image, output_size, shift, angle=0.0):
    """The sharp view of `image` from one camera pose, as `synthesize_blur` renders sub-frames.

    `image` and `output_size` are what `synthesize_blur` takes (the output is cut from the centre
    of `image`); `shift` (dy, dx) pixels and `angle` radians are relative to the label's pose, as
    a `SyntheticPair`'s `shifts` and `angles` are. At (0, 0) this is the pair's label and at a
    sub-frame's pose that sub-frame, when the highlights are not boosted (`highlight_gain` 1).
    At the mean pose it is a perfectly sharp restoration that puts the image at the centre of
    the smear (`experiments/label_position.py`).

    Returns:
        float32 (h, w, 3) sRGB in [0, 1].
    """
    height, width = output_size
    shift = np.asarray(shift, np.float64).reshape(1, 2)
    angle = np.asarray([angle], np.float64)
    margin = int(math.ceil(np.abs(shift).max() + math.hypot(height, width) / 2 * abs(angle[0]))) + 2
    linear = _linear_light(_source_region(np.asarray(image), (height, width), margin))
    planes = np.ascontiguousarray(np.moveaxis(linear, -1, 0)).reshape(3, -1)
    frame = _warp_subframes(planes, linear.shape[:2], (height, width), shift, angle)[:, 0]
    return linear_to_srgb(np.ascontiguousarray(frame.T).reshape(height, width, 3))


def _jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / np.float32(255)


def synthesize_blur(image, rng=None, settings=BlurSettings(), *, output_size=None,
                    return_subframes=False):
    """Blurs a sharp image the GoPro way (see the module doc).

    Args:
        image: sharp (H, W, 3) sRGB image, uint8 or float in [0, 1].
        rng: np.random.Generator, or a seed.
        settings: `BlurSettings`.
        output_size: (h, w) of the pair, cut from the centre of `image`, whose surroundings then
            feed the sub-frames that look past the output's border; None for the whole image.
            Where `image` does not reach far enough it is mirrored.
        return_subframes: also return the sRGB sub-frames.

    Returns:
        `SyntheticPair` (blurry, sharp float32 (h, w, 3) in [0, 1], ...).
    """
    rng = np.random.default_rng(rng)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a (H, W, 3) RGB image, got shape {image.shape}")
    height, width = output_size if output_size is not None else image.shape[:2]
    count = _draw(rng, settings.num_subframes, integer=True)
    label_index = count // 2 if settings.label == "middle" else int(rng.integers(0, count))
    length = settings.path_length(rng, height, width)
    rotation = math.radians(rng.uniform(0, settings.max_rotation_degrees))
    # No draw unless steady motion is asked for, so earlier recipes make the same pairs.
    steady = settings.steady_share > 0 and rng.random() < settings.steady_share
    trajectory = steady_camera_trajectory if steady else random_camera_trajectory
    shifts, angles = trajectory(rng, count, length, rotation)
    shifts, angles = shifts - shifts[label_index], angles - angles[label_index]  # label pose = identity

    reach = np.abs(shifts).max() + math.hypot(height, width) / 2 * np.abs(angles).max()
    margin = int(math.ceil(reach)) + 2
    linear = _linear_light(_source_region(image, (height, width), margin))
    gain = _draw(rng, settings.highlight_gain) if settings.highlight_gain != 1.0 else 1.0
    if gain != 1.0:
        linear = boost_highlights(linear, gain)
    planes = np.ascontiguousarray(np.moveaxis(linear, -1, 0)).reshape(3, -1)
    frames = _warp_subframes(planes, linear.shape[:2], (height, width), shifts, angles)

    def to_image(channels_first):  # (3, h * w) -> (h, w, 3)
        return np.ascontiguousarray(channels_first.T).reshape(height, width, 3)

    sharp = linear_to_srgb(to_image(frames[:, label_index]))
    blurry = linear_to_srgb(to_image(frames.mean(axis=1)))
    noise_sigma = _draw(rng, settings.noise_sigma)
    if noise_sigma:
        blurry = np.clip(blurry + rng.normal(0, noise_sigma, blurry.shape).astype(np.float32), 0, 1)
    if settings.jpeg_quality is not None:
        blurry = _jpeg(blurry, _draw(rng, settings.jpeg_quality, integer=True))
    subframes = None
    if return_subframes:
        subframes = np.stack([linear_to_srgb(to_image(frames[:, n])) for n in range(count)])
    return SyntheticPair(blurry, sharp, subframes, label_index, shifts, angles)


BUILTIN_SOURCES = {"builtin": "all", "builtin:train": "train", "builtin:heldout": "heldout"}


# What `source_options` may set, per kind of source.
SOURCE_OPTIONS = {"builtin": ("dead_leaves_count", "dead_leaves_size", "dead_leaves_style",
                              "photo_scales", "photo_share", "photo_variation",
                              "photo_packages"),
                  "folder": ("recursive", "crops_per_image", "scales", "cached_images")}


def check_source_options(source, options):
    """Raises ValueError unless `options` are arguments of `source`'s kind (`SOURCE_OPTIONS`).

    Returns:
        (builtin, is_folder) for `source`.
    """
    builtin = source is None or (isinstance(source, str) and source in BUILTIN_SOURCES
                                 and not Path(source).exists())
    is_folder = not builtin and isinstance(source, (str, os.PathLike))
    if options:
        if not (builtin or is_folder):
            raise ValueError("source_options apply to the built-in source or a folder, not to "
                             f"{source!r}")
        kind = "builtin" if builtin else "folder"
        unknown = sorted(set(options) - set(SOURCE_OPTIONS[kind]))
        if unknown:
            raise ValueError(f"source_options: unknown option(s) {', '.join(unknown)} for a "
                             f"{kind} source; known: {', '.join(SOURCE_OPTIONS[kind])}")
    return builtin, is_folder


def _as_source(source, seed, options=None):
    options = dict(options or {})
    builtin, is_folder = check_source_options(source, options)
    if builtin:
        which = BUILTIN_SOURCES[source or "builtin"]
        defaults = {} if which == "all" else {"photos": which, "photo_share": 0.5}
        if which == "heldout":  # photos only: dead leaves of any seed are the family it trained on
            defaults["photo_share"] = 1.0
            options.pop("photo_share", None)
        return BuiltinSource(seed, **{**defaults, **options})
    if is_folder:
        return FolderSource(source, **options)
    if not hasattr(source, "region"):
        raise TypeError("source must be None, a folder or an object with "
                        f"region(seed, index, height, width); got {source!r}")
    return source


def stack_pairs(pairs):
    """[(blurry, sharp), ...] -> (blurry batch, sharp batch)."""
    return np.stack([pair[0] for pair in pairs]), np.stack([pair[1] for pair in pairs])


class SyntheticPairs:
    """An endless, seeded stream of GoPro-style (blurry, sharp) pairs, needing no download.

    Pair `index` depends only on (seed, index): the stream can be generated in parallel, resumed,
    or split between training and held-out sets by using different seeds.

    Args:
        size: (height, width) of the pairs (an int for squares).
        seed: stream seed.
        source: None or "builtin" for the built-in source (dead leaves + bundled photos),
            "builtin:train" for it without the held-out photos (`sources.HELD_OUT_PHOTOS`),
            "builtin:heldout" for those photos alone (no dead leaves), a folder of sharp images, or an object with
            `region(seed, index, height, width)` (see `sources.py`).
        label, num_subframes, blur_extent, max_rotation_degrees, noise_sigma, jpeg_quality,
        blur_pixels, highlight_gain, blur_length_scale, steady_share: see `BlurSettings`.
        source_options: arguments of the built-in source or the folder source
            (`SOURCE_OPTIONS`), e.g. {"dead_leaves_count": 64} for a larger pool of
            dead-leaves images.
    """

    def __init__(self, size=(256, 256), seed=0, source=None, *, label="middle", num_subframes=(9, 15),
                 blur_extent=(0.02, 0.12), max_rotation_degrees=1.0, noise_sigma=0.0, jpeg_quality=None,
                 blur_pixels=None, highlight_gain=1.0, blur_length_scale="linear",
                 steady_share=0.0, source_options=None):
        self.size = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
        if min(self.size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.seed = int(seed)
        self.settings = BlurSettings(num_subframes, tuple(blur_extent), max_rotation_degrees, label,
                                     noise_sigma, jpeg_quality, blur_pixels, highlight_gain,
                                     blur_length_scale, steady_share)
        self.source = _as_source(source, self.seed, source_options)

    def source_region(self, index):
        """The sharp image pair `index` is made from: the output region at its centre, with
        the margin the blur reaches into around it (what `synthesize_blur` and `sharp_at_pose`
        take)."""
        height, width = self.size
        margin = self.settings.margin(height, width)
        return self.source.region(self.seed, int(index), height + 2 * margin, width + 2 * margin)

    def pair(self, index, return_subframes=False):
        """Stream pair `index` as a `SyntheticPair`; `pair(i)[:2]` is (blurry, sharp)."""
        region = self.source_region(index)
        return synthesize_blur(region, np.random.default_rng([self.seed, int(index)]), self.settings,
                               output_size=self.size, return_subframes=return_subframes)

    def prepare(self):
        """Builds the source's images (decoded photos, dead-leaves pool) now rather than at
        the first pairs, e.g. before worker processes are forked, so each need not build them."""
        prepare = getattr(self.source, "prepare", None)
        if prepare is not None:
            height, width = self.size
            margin = self.settings.margin(height, width)
            prepare(height + 2 * margin, width + 2 * margin)
        return self

    def __iter__(self):
        """Endless (blurry, sharp) float32 (H, W, 3) pairs, index 0 onwards."""
        for index in itertools.count():
            yield self.pair(index)[:2]

    def arrays(self, count, start_index=0, workers=None):
        """Pairs start_index .. start_index + count - 1 as arrays, generated in threads.

        Returns:
            (blurry, sharp), each float32 (count, H, W, 3) in [0, 1].
        """
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            pairs = list(pool.map(lambda i: self.pair(i)[:2], range(start_index, start_index + count)))
        height, width = self.size
        if not pairs:
            empty = np.zeros((0, height, width, 3), np.float32)
            return empty, empty.copy()
        return stack_pairs(pairs)


def make_synthetic_set(count, size=(256, 256), seed=1, source=None, workers=None, **settings):
    """A fixed held-out set: pairs 0 .. count-1 of `SyntheticPairs(size, seed, source, **settings)`.

    Use a seed different from the training stream's (the training default is 0).

    Returns:
        (blurry, sharp), each float32 (count, H, W, 3) in [0, 1].
    """
    return SyntheticPairs(size, seed, source, **settings).arrays(count, workers=workers)


def write_synthetic_set(out_dir, count, size=(256, 256), seed=1, source=None, *, overwrite=False,
                        workers=None, **settings):
    """Writes a synthetic set as a normal flat dataset: OUT/input/000000.png + OUT/target/000000.png.

    Files are written atomically; `synthetic.json` records the settings. With `overwrite`,
    images left over from an earlier, larger set are removed.

    Args:
        out_dir: destination folder; must be empty or absent unless `overwrite`.
        count, size, seed, source, **settings: as `SyntheticPairs`.
        workers: threads generating and writing pairs (default: all CPUs).

    Returns:
        the `PairSet` of the written set.

    Raises:
        DataError: `out_dir` is not empty and `overwrite` is False, or is a file.
    """
    from keras_mhdeblur.data.datasets import flat_pairs, list_images

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(f"{out_dir}: folder is not empty; choose an empty folder or pass --overwrite")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    stream = SyntheticPairs(size, seed, source, **settings)
    folders = {"input": out_dir / "input", "target": out_dir / "target"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(count - 1)))
    names = [f"{i:0{digits}d}.png" for i in range(count)]

    def write(index):
        blurry, sharp = stream.pair(index)[:2]
        write_png(folders["input"] / names[index], blurry)
        write_png(folders["target"] / names[index], sharp)

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        list(pool.map(write, range(count)))
    if overwrite:  # stale images of an earlier set would otherwise be paired with the new ones
        keep = set(names)
        for folder in folders.values():
            for path in list_images(folder).values():
                if path.name not in keep and path.suffix.lower() in IMAGE_EXTENSIONS:
                    path.unlink()
    record = {"count": count, "size": list(stream.size), "seed": stream.seed,
              "source": str(source) if source is not None else "builtin", **asdict(stream.settings)}
    write_json(out_dir / "synthetic.json", record)
    return flat_pairs(out_dir)
