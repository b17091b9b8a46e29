"""Sharp images for synthetic blur: the built-in offline source and a user's folder.

A source hands out sharp sRGB regions, (height, width, 3) uint8, chosen by (seed, index) alone, so a
synthetic stream is reproducible and can be generated in any order by any number of workers.

- `BuiltinSource`: procedurally drawn dead-leaves images (`dead_leaves.py`), plus the sample
  photographs bundled inside scikit-image's wheel (read from its package folder; nothing is ever
  downloaded). Without scikit-image it uses dead leaves only. `photo_packages` adds the photos
  that other packages bundle (`BUNDLED_PHOTOS`: scikit-learn's, matplotlib's, PyWavelets',
  mahotas's, imgaug's, and more of scikit-image's).
- `FolderSource`: the images in a folder (checked up front); each image gives several crops in a
  row so that large photos are decoded once per run of crops.
"""

import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from keras_mhdeblur.data.dead_leaves import check_style, dead_leaves_image
from keras_mhdeblur.data.datasets import list_images
from keras_mhdeblur.data.io import DataError, inspect_image, read_image_array

# Photographs that scikit-image ships inside its package (not the ones it downloads): colour ones,
# and grey textures and scenes (used as neutral RGB) for fine detail of other kinds.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "hubble_deep_field.jpg", "camera.png", "brick.png", "grass.png", "gravel.png")
# Kept out of training by `photos="train"` and used alone by `photos="heldout"`, so a model can
# be measured on photos it never saw.
HELD_OUT_PHOTOS = ("chelsea.png", "coffee.png")
PHOTO_SETS = ("all", "train", "heldout")
# Photos that installed packages bundle, per set: (importable package, pip name, folder inside
# the package, files). Only scikit-image's first set is used by default; `photo_packages` adds the
# others, so that a recipe says which images it trained on. None of them is held out. `.npz`
# files hold one grey image under "data" (PyWavelets' way of shipping them).
BUNDLED_PHOTOS = {
    "skimage": ("skimage", "scikit-image", "data", SKIMAGE_PHOTOS),
    "sklearn": ("sklearn", "scikit-learn", "datasets/images", ("china.jpg", "flower.jpg")),
    "matplotlib": ("matplotlib", "matplotlib", "mpl-data/sample_data", ("grace_hopper.jpg",)),
    # Added later, so that the recipes before it draw the same pairs: scikit-image's other
    # photographs with detail (coins; stained tissue; a retina), two grey photos of PyWavelets
    # (a staircase; aerial fields) and mahotas's portrait.
    "skimage_more": ("skimage", "scikit-image", "data", ("coins.png", "ihc.png", "retina.jpg")),
    "pywt": ("pywt", "PyWavelets", "data", ("ascent.npz", "aero.npz")),
    "mahotas": ("mahotas", "mahotas", "demos/data", ("luispedro.jpg",)),
    # Added after those: scikit-image's grey photo of the moon's surface, imgaug's quokka (fur;
    # a soft background) and mahotas's drawn department store (a scanned drawing, dense with
    # fine lines). mahotas's lena.jpg stays out: the field has stopped using that image.
    "skimage_moon": ("skimage", "scikit-image", "data", ("moon.png",)),
    "imgaug": ("imgaug", "imgaug", ".", ("quokka.jpg",)),
    "mahotas_drawing": ("mahotas", "mahotas", "demos/data", ("DepartmentStore.jpg",)),
}
# Real photographs with real camera-motion blur that scikit-image ships (no sharp reference).
REAL_BLURRY_PHOTOS = ("clock_motion.png",)
# Tags that keep the random streams of different purposes apart for the same (seed, index).
_STREAM_REGION, _STREAM_IMAGE_CHOICE, _STREAM_POOL = 2, 4, 6


def bundled_photo_paths(which="all", packages=("skimage",)):
    """Paths of the photos that the installed `packages` bundle (`BUNDLED_PHOTOS`).

    scikit-image is optional (none of its photos if it is not installed); any other package
    asked for must be installed, so that a recipe never trains on fewer photos than it names.

    Args:
        which: "all", "train" (without `HELD_OUT_PHOTOS`) or "heldout" (only those).
        packages: set names from `BUNDLED_PHOTOS` (each names its importable package).
    Raises:
        ValueError: `which` or a set is unknown, or a set other than scikit-image's default one
            is not installed in full.
    """
    if which not in PHOTO_SETS:
        raise ValueError(f"photos must be one of {PHOTO_SETS}, got {which!r}")
    _check_photo_packages(packages)
    paths = []
    for package in dict.fromkeys(packages):  # each once, in the order given
        module, pip_name, folder, names = BUNDLED_PHOTOS[package]
        if which == "heldout":
            names = tuple(name for name in names if name in HELD_OUT_PHOTOS)
        elif which == "train":
            names = tuple(name for name in names if name not in HELD_OUT_PHOTOS)
        found = _package_data_files(module, folder, names)
        if package != "skimage" and len(found) < len(names):
            raise ValueError(f"photo_packages: {package} names {len(names)} photo(s) in "
                             f"{pip_name}'s {folder}/ but {len(found)} are installed; install "
                             f"it with pip install {pip_name} (or keras_mhdeblur[more-photos])")
        paths.extend(found)
    return paths


def _check_photo_packages(packages):
    if isinstance(packages, str) or not all(name in BUNDLED_PHOTOS for name in packages):
        raise ValueError(f"photo_packages must be a list of {', '.join(BUNDLED_PHOTOS)}, got "
                         f"{packages!r}")


def bundled_blurry_photo_paths():
    """Paths of the `REAL_BLURRY_PHOTOS` in the installed scikit-image (none if not installed)."""
    return _package_data_files("skimage", "data", REAL_BLURRY_PHOTOS)


def _package_data_files(package, folder, names):
    """The files `names` of `package`'s data `folder` that exist. Looks in the folder without
    importing the package, so nothing can trigger a download (or a slow import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / folder
    return [folder / name for name in names if (folder / name).is_file()]


def read_bundled_photo(path):
    """A bundled photo as (H, W, 3) uint8: an image file, or a `.npz` with one grey image."""
    path = Path(path)
    if path.suffix != ".npz":
        return read_image_array(path)
    try:
        with np.load(path) as archive:
            grey = archive["data"]
    except Exception as error:
        raise DataError(f"{path}: cannot read a grey image under 'data' ({error})") from None
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise DataError(f"{path}: expected a 2-D uint8 image under 'data', got shape "
                        f"{grey.shape} of {grey.dtype}")
    return np.repeat(grey[:, :, None], 3, axis=2)


def random_region(image, rng, height, width):
    """A random (height, width) region of `image` in one of the 8 dihedral states.

    Images smaller than the region are mirrored at their borders to make up the size.

    Args:
        image: (H, W, 3) array.
        rng: np.random.Generator.
    Returns:
        (height, width, 3) array of the image's dtype.
    """
    state = int(rng.integers(0, 8))
    crop_h, crop_w = (width, height) if state & 4 else (height, width)  # transposed below
    pad_h, pad_w = max(0, crop_h - image.shape[0]), max(0, crop_w - image.shape[1])
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        image = np.pad(image, pads, mode="symmetric")
    top = int(rng.integers(0, image.shape[0] - crop_h + 1))
    left = int(rng.integers(0, image.shape[1] - crop_w + 1))
    region = image[top:top + crop_h, left:left + crop_w]
    if state & 4:
        region = np.swapaxes(region, 0, 1)
    if state & 1:
        region = region[:, ::-1]
    if state & 2:
        region = region[::-1]
    return np.ascontiguousarray(region)


def _downscale(image, scale):
    if scale == 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


# Luma weights (ITU-R BT.601) about which `varied_photo_region` changes saturation.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def varied_photo_region(image, rng, height, width, smallest_scale=0.5, white_balance=(0.8, 1.25),
                        saturation=(0.6, 1.4), gamma=(0.8, 1.25)):
    """A region of a photo at a continuous scale and with varied colours.

    A handful of photos seen tens of thousands of times get memorised: a model gains on them and
    loses on photos it never saw (docs/presets.md). Each call here frames the photo anew: a
    downscale drawn log-uniformly from [smallest_scale, 1] (only downscaling, which keeps it
    sharp), one of the 8 dihedral states, the colour channels in one of their 6 orders, a white
    balance (which also tints the grey photos), a saturation factor and a tone curve (gamma), so
    the same pixels rarely come back.

    Args:
        image: (H, W, 3) uint8 photo at full resolution.
        rng: np.random.Generator.
        smallest_scale: the strongest downscale; raised where the photo would not cover the
            region.
        white_balance: (low, high) range of the per-channel gains, drawn log-uniformly and
            scaled to keep the luma of grey.
        saturation, gamma: (low, high) ranges, drawn log-uniformly (1 keeps the photo's).
    Returns:
        (height, width, 3) uint8.
    """
    covering = max(height, width) / min(image.shape[:2])  # the strongest downscale that covers
    low = min(1.0, max(float(smallest_scale), covering))
    scale = _log_uniform(rng, (low, 1.0)) if low < 1.0 else 1.0
    crop = (height, width)  # at scale 1 a photo too small is mirrored at its borders, never upscaled
    if scale < 1.0:  # the window downscaled into the region, capped where rounding overshoots
        crop = tuple(min(round(side / scale), min(image.shape[:2])) for side in (height, width))
    region = random_region(image, rng, *crop)
    if region.shape[:2] != (height, width):
        region = np.asarray(Image.fromarray(region).resize((width, height), Image.Resampling.LANCZOS))
    pixels = region[..., rng.permutation(3)].astype(np.float32) / 255.0
    gains = _log_uniform(rng, white_balance, size=3)
    pixels = pixels * (gains / (gains @ _LUMA)).astype(np.float32)
    luma = pixels @ _LUMA
    pixels = luma[..., None] + _log_uniform(rng, saturation) * (pixels - luma[..., None])
    pixels = np.clip(pixels, 0.0, 1.0) ** _log_uniform(rng, gamma)
    return np.round(pixels * 255.0).astype(np.uint8)


def _log_uniform(rng, bounds, size=None):
    """A float (or `size` of them) drawn log-uniformly from the (low, high) `bounds`."""
    draws = np.exp(rng.uniform(*np.log(bounds), size))
    return float(draws) if size is None else draws


class BuiltinSource:
    """Dead-leaves images and the photographs installed packages bundle, needing no download.

    Args:
        seed: seeds the dead-leaves images (different seeds, different images).
        dead_leaves_count: number of dead-leaves images in the pool.
        dead_leaves_size: their side in pixels; None for twice the largest region asked for
            (at least 256).
        photos: also use the bundled photographs when scikit-image is installed: True or "all",
            "train" (all but `HELD_OUT_PHOTOS`), "heldout" (only those), False for none.
        photo_scales: each photo is also used downscaled by these factors (downscaling keeps
            it sharp; upscaling would not), where the result still covers the region asked for.
        photo_share: probability that a region comes from a photo rather than dead leaves.
        dead_leaves_style: "classic", "natural" (random-field textures and soft, defocused
            edges like photographs') or "textured" (denser, oriented textures); see
            `dead_leaves.dead_leaves_image`.
        photo_variation: frame each photo region anew (`varied_photo_region`): a continuous
            scale between min(photo_scales) and max(photo_scales), permuted colour channels,
            white balance, saturation and tone varied. False keeps the photos' own colours at
            the `photo_scales`.
        photo_packages: the packages whose bundled photos are used (`BUNDLED_PHOTOS`), e.g.
            ["skimage", "sklearn", "matplotlib"]; scikit-image's alone by default.
    """

    def __init__(self, seed=0, dead_leaves_count=8, dead_leaves_size=None, photos=True,
                 photo_scales=(1.0, 0.75, 0.5), photo_share=0.5, dead_leaves_style="classic",
                 photo_variation=False, photo_packages=("skimage",)):
        check_style(dead_leaves_style, "dead_leaves_style")  # at construction, not at first use
        if not isinstance(photo_variation, bool):
            raise ValueError(f"photo_variation must be true or false, got {photo_variation!r}")
        self.photo_variation = photo_variation
        self.seed = int(seed)
        self.dead_leaves_style = dead_leaves_style
        self.dead_leaves_count = int(dead_leaves_count)
        self.dead_leaves_size = dead_leaves_size
        which = "all" if photos is True else photos
        _check_photo_packages(photo_packages)  # at construction, even with photos=False
        self.photo_packages = tuple(photo_packages)
        self.photo_paths = bundled_photo_paths(which, self.photo_packages) if which else []
        self.photo_scales = tuple(photo_scales)
        self.photo_share = float(photo_share) if self.photo_paths else 0.0
        self._dead_leaves = []
        self._photos = None
        self._lock = threading.Lock()

    def _dead_leaves_pool(self, height, width):
        with self._lock:
            wanted = self.dead_leaves_size or max(256, 2 * max(height, width))
            size = max(int(wanted), height, width)
            if not self._dead_leaves or self._dead_leaves[0].shape[0] < max(height, width):
                self._dead_leaves = [
                    dead_leaves_image(np.random.default_rng([self.seed, i, _STREAM_POOL]), size, size,
                                      style=self.dead_leaves_style)
                    for i in range(self.dead_leaves_count)
                ]
            return self._dead_leaves

    def _photo_pool(self):
        with self._lock:
            if self._photos is None:
                photos = [read_bundled_photo(path) for path in self.photo_paths]
                # Varied photos are downscaled per region, from the largest of the scales.
                scales = (max(self.photo_scales),) if self.photo_variation else self.photo_scales
                self._photos = [[_downscale(photo, scale) for scale in scales] for photo in photos]
            return self._photos

    def prepare(self, height, width):
        """Builds the pools that regions of (height, width) draw from (`SyntheticPairs.prepare`)."""
        if self.photo_share < 1.0:
            self._dead_leaves_pool(height, width)
        if self.photo_share > 0.0:
            self._photo_pool()

    def region(self, seed, index, height, width):
        """The sharp region for stream pair `index`: (height, width, 3) uint8 sRGB."""
        rng = np.random.default_rng([seed, index, _STREAM_REGION])
        if rng.random() < self.photo_share:
            photo = self._photo_pool()[int(rng.integers(0, len(self.photo_paths)))]
            if self.photo_variation:
                return varied_photo_region(photo[0], rng, height, width, smallest_scale=min(
                    self.photo_scales) / max(self.photo_scales))
            large_enough = [image for image in photo if min(image.shape[:2]) >= max(height, width)]
            pool = large_enough or [max(photo, key=lambda image: image.size)]
        else:
            pool = self._dead_leaves_pool(height, width)
        return random_region(pool[int(rng.integers(0, len(pool)))], rng, height, width)


class FolderSource:
    """Sharp images from a folder (e.g. DIV2K, your own photos), checked up front.

    Args:
        folder: folder of images (png, jpg, ...); see `io.py` for the conversions.
        recursive: also use images in sub-folders.
        crops_per_image: consecutive stream pairs that share one image (decoded once).
        scales: downscaling factors drawn per crop (1.0 = as is).
        cached_images: decoded images kept in memory.
        verify: run Pillow's integrity check on every file.

    Raises:
        DataError: the folder is missing, holds no images, or some files are unreadable.
    """

    def __init__(self, folder, recursive=True, crops_per_image=8, scales=(1.0,), cached_images=8,
                 verify=True):
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: source folder not found")
        self.paths = list(list_images(folder, recursive).values())
        if not self.paths:
            raise DataError(f"{folder}: no images found for the synthetic-blur source")
        problems = []
        for path in self.paths:
            try:
                inspect_image(path, verify)
            except DataError as error:
                problems.append(str(error))
        if problems:
            listed = "\n  ".join(problems[:20])
            raise DataError(f"{len(problems)} unreadable source image(s):\n  {listed}")
        self.crops_per_image = max(1, int(crops_per_image))
        self.scales = tuple(scales)
        self._cache = OrderedDict()
        self._cached_images = max(1, int(cached_images))
        self._lock = threading.Lock()

    def _image(self, number, scale):
        key = (number, scale)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        image = _downscale(read_image_array(self.paths[number]), scale)
        with self._lock:
            self._cache[key] = image
            while len(self._cache) > self._cached_images:
                self._cache.popitem(last=False)
        return image

    def region(self, seed, index, height, width):
        """The sharp region for stream pair `index`: (height, width, 3) uint8 sRGB."""
        run = index // self.crops_per_image
        choice = np.random.default_rng([seed, run, _STREAM_IMAGE_CHOICE])
        number = int(choice.integers(0, len(self.paths)))
        rng = np.random.default_rng([seed, index, _STREAM_REGION])
        scale = self.scales[int(rng.integers(0, len(self.scales)))]
        return random_region(self._image(number, scale), rng, height, width)
