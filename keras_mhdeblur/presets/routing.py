"""Which preset suits a photo: a small network measures its smear (`mhdeblur deblur`'s default).

The shipped presets are specialists. `nafnet-w16-mh4` gains on mild and moderate blur and
leaves long smears as they are; `nafnet-w16-mh4-long` gains 1-2 dB more on straight smears of
8-64 px and harms mild blur (docs/presets.md, "One preset per photo"). At this width one network
does not hold both, so the choice is made per photo, from the blurry photo alone:

- `build_router`: a few strided convolutions and a global mean read a `PATCH` x `PATCH` patch,
  standardised (so that its brightness and contrast say nothing), and estimate how far the
  camera moved while it was exposed: log2 of the path length in pixels. It is trained on
  synthetic pairs of the training photos, whose path lengths are known (1-64 px, half under
  steady motion; `tools/train_router.py`), not on which preset won: the length is what the
  blur shows, whatever the photo.
- `Router.choose(image)`: the estimates on patches covering the photo, averaged with weights by
  each patch's detail (its mean gradient: blur shows only where there are edges), give the
  photo's smear; the second preset deblurs smears of `threshold` pixels or more. The threshold
  is the one under which the routed choice restores pairs of the training photos best, with
  both presets run on them (`best_threshold`).

A router folder holds `router.json` (the network's Keras config, the presets it chooses between,
the threshold and what was measured) and `router.weights.h5`; the shipped one is
`presets/router/`.

    choice = choose_preset(image)          # image: (H, W, 3) float in [0, 1]
    choice.preset, choice.smear_pixels
"""

import json
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from keras_mhdeblur.presets import PRESET_DIR, PresetError, shipped_presets

ROUTER_DIR = PRESET_DIR / "router"
ROUTER_CONFIG, ROUTER_WEIGHTS = "router.json", "router.weights.h5"
# Patch side the router reads (and was trained on): longer than the longest smear it measures.
PATCH = 128
# Patches read per photo at most (an even spread over the grid when a photo has more).
MAX_PATCHES = 96
# The path lengths the router learns, as log2 of pixels: 1 to 64 px.
LOG2_LENGTHS = (0.0, 6.0)
# The blur it learns to read: the long preset's octaves and the default's mild end, half of it
# under steady motion, with the presets' noise, JPEG and clipped highlights (`data.BlurSettings`).
ROUTER_BLUR = {"num_subframes": (17, 49), "blur_pixels": (1, 64), "blur_length_scale": "log",
               "max_rotation_degrees": 1.0, "noise_sigma": (0.0, 0.01), "jpeg_quality": (75, 95),
               "highlight_gain": (1.0, 3.0), "steady_share": 0.5}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class PatchStandardization(keras.layers.Layer):
    """Each image minus its mean, over its standard deviation (all pixels and channels): what
    is left is the shape of its edges, not its brightness or contrast."""

    def call(self, images):
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        deviation = ops.std(images, axis=(1, 2, 3), keepdims=True)
        return (images - mean) / (deviation + 1e-3)


def build_router(width=16):
    """The router network: (B, h, w, 3) in [0, 1] -> (B, 1), the path length's log2 estimate.

    Five stride-2 convolutions see 65 px, the longest smear measured; the global mean pools the
    patch. 90 k parameters, a few milliseconds per patch on a CPU.
    """
    from keras import layers

    stack = [keras.Input((None, None, 3)), PatchStandardization(),
             layers.Conv2D(width, 3, padding="same", activation="relu")]
    for multiple in (1.5, 2, 3, 4, 4):
        stack.append(layers.Conv2D(int(width * multiple), 3, strides=2, padding="same",
                                   activation="relu"))
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(1)]
    return keras.Sequential(stack, name="preset_router")


class Choice(NamedTuple):
    """What `Router.choose` decided: the preset's name, the photo's estimated smear (camera
    path length, pixels) and how many patches were read."""
    preset: str
    smear_pixels: float
    patches: int


def photo_patches(image, patch=PATCH, limit=MAX_PATCHES):
    """(N, patch, patch, 3) patches covering `image` (H, W, 3) on a grid (overlapping where the
    size is not a multiple), mirrored up to `patch` where the photo is smaller; at most `limit`,
    evenly spread."""
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    pad = [(0, max(0, patch - size)) for size in image.shape[:2]] + [(0, 0)]
    if any(after for _, after in pad[:2]):
        image = np.pad(image, pad, mode="symmetric")
    height, width = image.shape[:2]
    rows = np.linspace(0, height - patch, -(-height // patch)).round().astype(int)
    columns = np.linspace(0, width - patch, -(-width // patch)).round().astype(int)
    origins = [(row, column) for row in rows for column in columns]
    if len(origins) > limit:
        origins = [origins[i] for i in np.linspace(0, len(origins) - 1, limit).round().astype(int)]
    return np.stack([image[row:row + patch, column:column + patch] for row, column in origins])


def patch_detail(patches):
    """Mean gradient magnitude of each patch's grey image, (N,): where blur can show."""
    grey = np.asarray(patches, np.float32).mean(axis=-1)
    dy, dx = np.diff(grey, axis=1)[:, :, :-1], np.diff(grey, axis=2)[:, :-1, :]
    return np.sqrt(dy * dy + dx * dx).mean(axis=(1, 2))


def _damaged(path, error):
    return PresetError(f"{path}: damaged ({type(error).__name__}: {error})")


def router_record(folder):
    """A router folder's router.json as a dict (the presets, the threshold, the figures and
    the network's config); an error naming the file when it is missing or damaged."""
    path = Path(folder) / ROUTER_CONFIG
    try:
        record = json.loads(path.read_text())
        if not {"presets", "threshold", "network"} <= set(record):
            raise ValueError("it names no presets, threshold or network")
    except FileNotFoundError:
        raise PresetError(f"{path}: missing (a router folder holds {ROUTER_CONFIG} and "
                          f"{ROUTER_WEIGHTS})") from None
    except Exception as error:
        raise _damaged(path, error) from None
    return record


class Router:
    """A loaded router: `Router.load(folder)`, then `router.choose(image) -> Choice`.

    Args:
        network: `build_router`'s network.
        presets: the two preset names, for shorter and for longer smears.
        threshold: smears of this many pixels or more go to the second preset.
        metadata: what was trained and measured (stored in router.json).
    """

    def __init__(self, network, presets, threshold=8.0, metadata=None):
        if len(presets) != 2:
            raise ValueError(f"a router chooses between two presets, got {presets!r}")
        self.network, self.presets, self.threshold = network, list(presets), float(threshold)
        self.metadata = metadata or {}

    @classmethod
    def load(cls, folder=ROUTER_DIR):
        folder = Path(folder)
        record = router_record(folder)
        try:
            network = keras.saving.deserialize_keras_object(record["network"])
        except Exception as error:
            raise _damaged(folder / ROUTER_CONFIG, error) from None
        try:
            network.load_weights(folder / ROUTER_WEIGHTS)
        except Exception as error:
            raise PresetError(f"{folder / ROUTER_WEIGHTS}: damaged or from another router "
                              f"({type(error).__name__}: {error})") from None
        metadata = {key: value for key, value in record.items()
                    if key not in ("network", "presets", "threshold")}
        return cls(network, record["presets"], record["threshold"], metadata)

    def save(self, folder, overwrite=False):
        """Writes the router folder atomically; refuses to replace one unless `overwrite`."""
        from keras_mhdeblur.utils.files import write_folder_atomically

        folder = Path(folder)
        if folder.exists() and not overwrite:
            raise PresetError(f"{folder}: already exists; pass overwrite=True to replace it")
        config = keras.saving.serialize_keras_object(self.network)
        config.pop("compile_config", None)  # a router carries no training state
        record = {**self.metadata, "presets": self.presets, "threshold": self.threshold,
                  "patch": PATCH, "network": config}
        # An uncompiled copy of the network: a compiled one saves its optimiser's state too.
        weights_only = keras.saving.deserialize_keras_object(config)
        weights_only.set_weights(self.network.get_weights())

        def write(temporary):
            (temporary / ROUTER_CONFIG).write_text(json.dumps(record, indent=2))
            weights_only.save_weights(temporary / ROUTER_WEIGHTS)

        return write_folder_atomically(folder, write)

    def patch_smears(self, patches, batch_size=32):
        """The estimated path length of each patch, (N,) pixels."""
        estimates = np.concatenate([
            keras.ops.convert_to_numpy(self.network(patches[start:start + batch_size]))
            for start in range(0, len(patches), batch_size)])[:, 0]
        return 2.0 ** np.clip(estimates.astype(np.float64), *LOG2_LENGTHS)

    def smear(self, image):
        """(pixels, patches): the photo's estimated smear, the detail-weighted mean of its
        patches' log2 estimates, and how many patches were read."""
        patches = photo_patches(image)
        detail = patch_detail(patches)
        weights = detail if detail.sum() > 0 else np.ones_like(detail)
        log2 = np.log2(self.patch_smears(patches))
        return float(2.0 ** (np.sum(weights * log2) / np.sum(weights))), len(patches)

    def choose(self, image):
        """The `Choice` for one photo, (H, W, 3) float in [0, 1]."""
        pixels, patches = self.smear(image)
        return Choice(self.presets[pixels >= self.threshold], pixels, patches)

    def explain(self, choice):
        """Why `choice` went where it went, in a few words for a user."""
        return f"smear ~{choice.smear_pixels:.0f} px, long from {self.threshold:.0f}"


def preset_fingerprint(name):
    """A preset's name and the start of its weights' SHA-256: the threshold a router was chosen
    with belongs to these weights (retrain it when they change)."""
    import hashlib

    from keras_mhdeblur.presets import WEIGHTS_FILE, resolve_preset

    digest = hashlib.sha256((resolve_preset(name) / WEIGHTS_FILE).read_bytes()).hexdigest()
    return f"{name}@{digest[:16]}"


class SmearPairs(NamedTuple):
    """`smear_pairs`' pairs: blurry (N, size, size, 3) float32, each camera path's length in
    pixels and straightness (N,), and each preset's PSNR (N, P) or None."""
    blurry: np.ndarray
    lengths: np.ndarray
    straightness: np.ndarray
    psnr: np.ndarray | None


def path_length(shifts):
    """The length in pixels of a camera path ((N, 2) positions, a `SyntheticPair`'s shifts)."""
    return float(np.linalg.norm(np.diff(shifts, axis=0), axis=1).sum())


def path_straightness(shifts):
    """How straight a camera path ((N, 2) positions) is: the distance from its start to its end
    over its length, 1 for a straight line (steady motion), lower for shake; 1 for no motion."""
    length = path_length(shifts)
    return float(np.linalg.norm(shifts[-1] - shifts[0]) / length) if length > 0 else 1.0


def smear_pairs(count, seed, source="builtin:train", source_options=None, size=PATCH,
                blur=None, presets=None):
    """Synthetic pairs with the path length each was blurred along: what the router learns
    from (and, with `presets`, what its threshold is chosen and measured on).

    Args:
        count, seed: pairs 0 .. count - 1 of the stream `seed`.
        source, source_options: the sharp images (`data.SyntheticPairs`): the training photos,
            or `builtin:heldout` to measure on photos neither the router nor the presets saw.
        size: pair side.
        blur: `data.BlurSettings` keys, `ROUTER_BLUR` by default.
        presets: None, or preset names or folders whose shipped outputs are measured too.

    Returns:
        `SmearPairs`: blurry (count, size, size, 3) float32, lengths and straightness (count,)
        of the camera paths (`path_straightness`), psnr (count, P) of each preset's shipped
        output against the sharp image, 8-bit as `evaluation.psnr_uint8`, or None without
        `presets`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from keras_mhdeblur.data import SyntheticPairs
    from keras_mhdeblur.data.io import to_uint8
    from keras_mhdeblur.data.synthetic import stack_pairs
    from keras_mhdeblur.evaluation import psnr_uint8
    from keras_mhdeblur.inference import pick_outputs, predictor
    from keras_mhdeblur.presets import from_preset

    stream = SyntheticPairs(size, seed=seed, source=source, source_options=source_options,
                            label="middle", **(ROUTER_BLUR if blur is None else blur))
    with ThreadPoolExecutor() as pool:
        pairs = list(pool.map(stream.pair, range(count)))
    blurry, sharp = stack_pairs([pair[:2] for pair in pairs])
    lengths = np.array([path_length(pair.shifts) for pair in pairs])
    straightness = np.array([path_straightness(pair.shifts) for pair in pairs])
    if presets is None:
        return SmearPairs(blurry, lengths, straightness, None)
    # Batches of 16 through the predictor: thousands of pairs, one output each
    # (`evaluation.evaluate_model` restores one image at a time and scores every output).
    psnr = np.zeros((count, len(presets)))
    for column, name in enumerate(presets):
        model = from_preset(name)
        run = predictor(model)
        for start in range(0, count, 16):
            restored = pick_outputs(model, run(blurry[start:start + 16]), "shipped")
            psnr[start:start + 16, column] = [
                psnr_uint8(to_uint8(output), to_uint8(target))
                for output, target in zip(restored, sharp[start:start + 16])]
    return SmearPairs(blurry, lengths, straightness, psnr)


# The `data.augment.dihedral_transform` state of each random draw d: d % 4 quarter turns, then a
# mirror for d >= 4 (the order the shipped router was trained in, so that its command reproduces
# it).
DRAWN_SYMMETRIES = (0, 6, 3, 5, 1, 7, 2, 4)


def fit_router(network, blurry, lengths, epochs, batch_size=32, learning_rate=1e-3, seed=0,
               verbose=0):
    """Trains `network` (`build_router`) to estimate log2 of each pair's path length (squared
    error, lengths within `LOG2_LENGTHS`); every epoch sees each square patch flipped or
    transposed at random (the length does not depend on the smear's direction)."""
    from keras_mhdeblur.data.augment import dihedral_transform

    targets = np.clip(np.log2(np.maximum(lengths, 1e-6)), *LOG2_LENGTHS)
    targets = targets.astype(np.float32)[:, None]
    network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        states = np.take(DRAWN_SYMMETRIES, rng.integers(0, 8, len(blurry)))
        turned = np.empty_like(blurry)
        for state in range(8):  # one transform of the whole group per symmetry
            turned[states == state] = dihedral_transform(blurry[states == state], state)
        network.fit(turned, targets, batch_size=batch_size, epochs=1, shuffle=True,
                    verbose=verbose)
    return network


def routed_figures(smears, psnr, threshold):
    """Mean PSNR of each of two presets, of the routed choice (the second from `threshold`
    pixels of smear) and of the better of the two per pair (a perfect router), and the share
    routed to the second."""
    second = np.asarray(smears) >= threshold
    return {"pairs": len(psnr), "first_psnr": float(psnr[:, 0].mean()),
            "second_psnr": float(psnr[:, 1].mean()),
            "routed_psnr": float(np.where(second, psnr[:, 1], psnr[:, 0]).mean()),
            "best_of_two_psnr": float(psnr.max(axis=1).mean()),
            "second_share": float(second.mean())}


def best_threshold(smears, psnr):
    """The smear threshold (pixels) under which routing restores these pairs best: the second
    preset for smears at or above it. Ties go to the larger threshold (the first preset is the
    default)."""
    candidates = np.concatenate([np.sort(np.asarray(smears, np.float64)), [np.inf]])
    routed = [routed_figures(smears, psnr, threshold)["routed_psnr"] for threshold in candidates]
    best = int(np.flatnonzero(np.isclose(routed, max(routed)))[-1])
    return float(candidates[best])


def shipped_router_record():
    """The shipped router's router.json (`router_record`) when it and both its presets are in
    this installation, else None: what `mhdeblur deblur` will do, without building the network."""
    if not (ROUTER_DIR / ROUTER_CONFIG).exists():
        return None
    record = router_record(ROUTER_DIR)
    return record if all(name in shipped_presets() for name in record["presets"]) else None


def shipped_router():
    """The shipped router when it and both its presets are in this installation, else None."""
    return Router.load(ROUTER_DIR) if shipped_router_record() is not None else None


def choose_preset(image, router=None):
    """The `Choice` of shipped preset for `image` ((H, W, 3) float in [0, 1]); see the module
    doc. `router`: a `Router` (default: the shipped one)."""
    router = router or shipped_router()
    if router is None:
        raise PresetError("this installation ships no preset router (presets/router/ and the "
                          "presets it chooses between); name a preset instead")
    return router.choose(image)
