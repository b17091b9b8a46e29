"""Paired (blurry, sharp) datasets as they are laid out on disk, paired by name.

Layouts:
- GoPro as distributed: `ROOT/train|test/<scene>/blur|blur_gamma|sharp/*.png` (`gopro_pairs`).
- Flat, as NAFNet, MPRNet and HINet prepare GoPro and HIDE: `ROOT/train|test/input|target/*`, or a
  folder holding `input/` and `target/` directly, as `mhdeblur make-synthetic` writes (`flat_pairs`).
- RealBlur pair lists: lines "sharp_path blurry_path" relative to the dataset root, e.g.
  `RealBlur_J_train_list.txt` (`realblur_pairs`).
- Any two folders whose files have matching names (`folder_pairs`).

`find_pairs(root, split)` recognises the layout. Files are paired by their name (relative path
without the extension), never by sort order; files without a partner stop the build with a
`DataError` listing them unless `allow_unpaired=True`, which skips them with a warning.
"""

import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keras_mhdeblur.data.io import IMAGE_EXTENSIONS, DataError, inspect_image

GOPRO_BLUR_FOLDERS = ("blur", "blur_gamma")
# Folder-name pairs recognised by `find_pairs` as (blurry, sharp), in order of preference.
FOLDER_NAME_PAIRS = (("input", "target"), ("blur", "sharp"), ("blurry", "sharp"), ("lq", "gt"),
                     ("input", "gt"), ("blur", "gt"))
_MAX_LISTED = 10


@dataclass(frozen=True)
class ImagePair:
    """One (blurry, sharp) pair of files.

    Attributes:
        name: unique name inside its dataset, e.g. "GOPR0384_11_00/000001.png".
        blurry: path of the blurry (input) image.
        sharp: path of the sharp (target) image.
        group: scene or sub-folder the pair belongs to ("" when the layout has none).
    """

    name: str
    blurry: Path
    sharp: Path
    group: str = ""


@dataclass(frozen=True)
class PairInfo:
    """Checked facts about one pair: its size and how its files must be decoded."""

    height: int
    width: int
    bit_depth: int  # 16 if either file is a 16-bit PNG, else 8
    tf_decodable: bool  # both files can be decoded by TensorFlow (see io.py)


@dataclass(frozen=True)
class PairSet:
    """The pairs of one split of a dataset, and what was found while pairing them.

    Attributes:
        root: the dataset root folder.
        layout: "gopro", "flat", "realblur" or "folders".
        split: "train", "test", ... or None when the layout has no split.
        pairs: the pairs, sorted by name.
        unpaired: files (or list entries) without a partner that were skipped.
        source: where the pairs came from (folders or list file), for `summary()`.
    """

    root: Path
    layout: str
    split: str | None
    pairs: tuple
    unpaired: tuple = ()
    source: str = ""
    _checked: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self):
        return len(self.pairs)

    def __iter__(self):
        return iter(self.pairs)

    def __getitem__(self, index):
        return self.pairs[index]

    @property
    def names(self):
        return [pair.name for pair in self.pairs]

    def group_counts(self):
        """{group: number of pairs}, in name order; empty when the layout has no groups."""
        counts = Counter(pair.group for pair in self.pairs)
        return {} if set(counts) == {""} else dict(sorted(counts.items()))

    def summary(self):
        """A few human-readable lines: layout, split, counts per group, unpaired files."""
        split = f", split {self.split!r}" if self.split else ""
        count = len(self.pairs)
        lines = [f"{self.layout} layout at {self.root}{split}: {count} pair{'' if count == 1 else 's'}"]
        if self.source:
            lines.append(f"  from {self.source}")
        groups = self.group_counts()
        if groups:
            listed = ", ".join(f"{group} ({n})" for group, n in groups.items())
            lines.append(f"  {len(groups)} groups: {listed}")
        if self.unpaired:
            lines.append(f"  {len(self.unpaired)} unpaired, skipped: " + _listing(self.unpaired))
        return "\n".join(lines)

    def select(self, indices):
        """A PairSet holding the pairs at `indices` (same root, layout and split)."""
        chosen = tuple(self.pairs[int(i)] for i in indices)
        return PairSet(self.root, self.layout, self.split, chosen, self.unpaired, self.source)

    def holdout(self, count, seed=0):
        """Splits off about `count` pairs for validation, by whole groups when there are several.

        GoPro scenes are videos whose neighbouring frames are near duplicates, so a random frame
        split would leak; whole scenes are held out until at least `count` pairs are.

        Returns:
            (rest, held_out) PairSets.
        """
        rng = np.random.default_rng(seed)
        groups = self.group_counts()
        if len(groups) > 1:
            held_groups, total = set(), 0
            for group in rng.permutation(sorted(groups)):
                if total >= count:
                    break
                held_groups.add(group)
                total += groups[group]
            held = [i for i, pair in enumerate(self.pairs) if pair.group in held_groups]
        else:
            held = sorted(rng.permutation(len(self.pairs))[:count].tolist())
        rest = sorted(set(range(len(self.pairs))) - set(held))
        return self.select(rest), self.select(held)

    def check(self, min_size=None, verify=True, workers=8):
        """Reads every file's header once and checks it can be used; results are cached.

        Args:
            min_size: (height, width) every image must reach (a training crop), or None.
            verify: also run Pillow's integrity check (see `inspect_image`).
            workers: threads reading headers.

        Returns:
            tuple of `PairInfo`, one per pair.

        Raises:
            DataError: listing every unreadable or unsupported file; or every pair whose two
                images differ in size or are smaller than `min_size`.
        """
        min_size = None if min_size is None else (int(min_size[0]), int(min_size[1]))
        if (verify, min_size) in self._checked:
            return self._checked[(verify, min_size)]
        if verify not in self._checked:
            self._checked[verify] = _read_headers(self, verify, workers)
        problems, infos = [], []
        for pair, (blurry, sharp) in zip(self.pairs, self._checked[verify]):
            if (blurry.height, blurry.width) != (sharp.height, sharp.width):
                problems.append(
                    f"pair {pair.name!r}: blurry {pair.blurry} is {blurry.height}x{blurry.width} (HxW) "
                    f"but sharp {pair.sharp} is {sharp.height}x{sharp.width}; they must match")
            elif min_size is not None and (blurry.height < min_size[0] or blurry.width < min_size[1]):
                problems.append(
                    f"pair {pair.name!r}: {pair.blurry} is {blurry.height}x{blurry.width} (HxW), "
                    f"smaller than the {min_size[0]}x{min_size[1]} crop")
            infos.append(PairInfo(blurry.height, blurry.width, max(blurry.bit_depth, sharp.bit_depth),
                                  blurry.tf_decodable and sharp.tf_decodable))
        _raise_problems(problems, self.root, self.split)
        self._checked[(verify, min_size)] = tuple(infos)
        return self._checked[(verify, min_size)]


def _read_headers(pair_set, verify, workers):
    """[(blurry ImageInfo, sharp ImageInfo)] per pair; raises one DataError for all bad files."""
    if not pair_set.pairs:
        raise DataError(f"{pair_set.root}: the pair set is empty")
    files = [path for pair in pair_set for path in (pair.blurry, pair.sharp)]
    problems = []

    def inspect(path):
        try:
            return inspect_image(path, verify)
        except DataError as error:
            problems.append(str(error))
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        headers = list(pool.map(inspect, files))
    _raise_problems(sorted(problems), pair_set.root, pair_set.split)
    return list(zip(headers[0::2], headers[1::2]))


def _raise_problems(problems, root, split):
    if not problems:
        return
    where = f"{root}" + (f" ({split})" if split else "")
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise DataError(f"{len(problems)} problem(s) in {where}:\n  {shown}{more}")


def _listing(paths):
    shown = [str(p) for p in list(paths)[:_MAX_LISTED]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _require_folder(path, what):
    path = Path(path)
    if not path.is_dir():
        why = " (it is a file)" if path.exists() else ""
        raise DataError(f"{path}: {what} folder not found{why}")
    return path


def list_images(folder, recursive=False):
    """Image files in `folder` (by extension, hidden files skipped) as {key: path}.

    The key is the path relative to `folder` without its extension, in POSIX form, so "a.png"
    pairs with "a.jpg". Two files with the same key ("a.png" and "a.jpg") raise a DataError.
    """
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    images = {}
    for path in sorted(folder.glob(pattern)):
        relative = path.relative_to(folder)
        if path.suffix.lower() not in IMAGE_EXTENSIONS or any(p.startswith(".") for p in relative.parts):
            continue
        if not path.is_file():
            continue
        key = relative.with_suffix("").as_posix()
        if key in images:
            raise DataError(f"{folder}: {images[key].name} and {path.name} have the same name; "
                            "cannot tell which one to pair")
        images[key] = path
    return images


def _pair_by_key(blurry, sharp, blurry_folder, allow_unpaired, group=""):
    """Pairs two {key: path} maps from `list_images`; returns (pairs, unpaired paths)."""
    unpaired = sorted([blurry[k] for k in blurry.keys() - sharp.keys()]
                      + [sharp[k] for k in sharp.keys() - blurry.keys()])
    if unpaired and not allow_unpaired:
        raise DataError(
            f"{blurry_folder.parent}: {len(unpaired)} file(s) have no partner with the same name: "
            f"{_listing(unpaired)} (to skip them: allow_unpaired=True, or --allow-unpaired on the command line)"
        )
    prefix = f"{group}/" if group else ""
    pairs = [ImagePair(prefix + blurry[key].relative_to(blurry_folder).as_posix(), blurry[key],
                       sharp[key], group)
             for key in sorted(blurry.keys() & sharp.keys())]
    return pairs, unpaired


def _finish(root, layout, split, pairs, unpaired, source):
    if not pairs:
        raise DataError(f"{root}: no image pairs found in {source} "
                        f"(image extensions: {' '.join(IMAGE_EXTENSIONS)})")
    if unpaired:
        warnings.warn(f"{root}: skipped {len(unpaired)} unpaired file(s): {_listing(unpaired)}",
                      stacklevel=3)
    pairs = tuple(sorted(pairs, key=lambda pair: pair.name))
    return PairSet(Path(root), layout, split, pairs, tuple(unpaired), source)


def folder_pairs(blurry_dir, sharp_dir, recursive=False, allow_unpaired=False):
    """Pairs two folders whose files have matching names ("a.png" with "a.png" or "a.jpg").

    Args:
        blurry_dir, sharp_dir: the folders.
        recursive: also pair files in sub-folders (by relative path).
        allow_unpaired: skip files without a partner (with a warning) instead of raising.

    Returns:
        `PairSet` with layout "folders"; pair names are the blurry files' relative paths.
    """
    blurry_dir = _require_folder(blurry_dir, "blurry-image")
    sharp_dir = _require_folder(sharp_dir, "sharp-image")
    blurry, sharp = list_images(blurry_dir, recursive), list_images(sharp_dir, recursive)
    if not blurry or not sharp:
        empty = blurry_dir if not blurry else sharp_dir
        raise DataError(f"{empty}: no images found (extensions: {' '.join(IMAGE_EXTENSIONS)})")
    pairs, unpaired = _pair_by_key(blurry, sharp, blurry_dir, allow_unpaired)
    root = blurry_dir.parent if blurry_dir.parent == sharp_dir.parent else blurry_dir
    return _finish(root, "folders", None, pairs, unpaired, f"{blurry_dir} + {sharp_dir}")


def flat_pairs(root, split=None, allow_unpaired=False):
    """The flat layout: `root/split/input/*` paired with `root/split/target/*`.

    With `split=None`, `root` itself holds `input/` and `target/` (as `make-synthetic` writes).
    """
    base = Path(root) / split if split else Path(root)
    _require_folder(base, f"split {split!r}" if split else "dataset")
    pairs = folder_pairs(base / "input", base / "target", allow_unpaired=allow_unpaired)
    return PairSet(Path(root), "flat", split, pairs.pairs, pairs.unpaired, f"{base}/input + target")


def gopro_pairs(root, split="train", blur="blur", allow_unpaired=False):
    """GoPro as distributed: `root/split/<scene>/{blur|blur_gamma}/*` with `<scene>/sharp/*`.

    Args:
        root: the GoPro root (e.g. "GOPRO_Large"), holding `train/` and `test/`.
        split: "train" or "test".
        blur: "blur" (averaged in linear space, the default everyone uses) or "blur_gamma".
        allow_unpaired: skip files without a partner instead of raising.

    Returns:
        `PairSet` with layout "gopro"; groups are scenes, names "<scene>/<file>".
    """
    if blur not in GOPRO_BLUR_FOLDERS:
        raise ValueError(f"blur must be one of {GOPRO_BLUR_FOLDERS}, got {blur!r}")
    base = _require_folder(Path(root) / split, f"GoPro split {split!r}")
    scenes = sorted(p for p in base.iterdir() if p.is_dir() and (p / "sharp").is_dir())
    if not scenes:
        raise DataError(f"{base}: no scene folders with a sharp/ sub-folder (GoPro layout "
                        f"<scene>/{blur}/ + <scene>/sharp/)")
    pairs, unpaired = [], []
    for scene in scenes:
        if not (scene / blur).is_dir():
            raise DataError(f"{scene}: has sharp/ but no {blur}/ folder")
        scene_pairs, scene_unpaired = _pair_by_key(
            list_images(scene / blur), list_images(scene / "sharp"), scene / blur, allow_unpaired,
            scene.name)
        pairs += scene_pairs
        unpaired += scene_unpaired
    return _finish(root, "gopro", split, pairs, unpaired, f"{base}/<scene>/{blur} + sharp")


def realblur_pairs(root, list_file, allow_unpaired=False):
    """RealBlur pair lists: each line "sharp_path blurry_path", relative to `root`.

    Args:
        root: the dataset root the listed paths are relative to.
        list_file: the list (e.g. "RealBlur_J_test_list.txt"), absolute or relative to `root`.
        allow_unpaired: skip lines whose files are missing (with a warning) instead of raising.

    Returns:
        `PairSet` with layout "realblur"; names are the blurry paths as listed, groups the
        folder above `blur/` (the scene).
    """
    root = _require_folder(root, "RealBlur root")
    list_path = Path(list_file) if Path(list_file).is_absolute() else root / list_file
    if not list_path.is_file():
        raise DataError(f"{list_path}: pair list not found")
    pairs, missing = [], []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{list_path}:{number}: expected 'sharp_path blurry_path', "
                            f"got {line.strip()!r}")
        sharp, blurry = root / fields[0], root / fields[1]
        absent = [str(p) for p in (sharp, blurry) if not p.is_file()]
        if absent:
            missing += absent
            continue
        group = Path(fields[1]).parent.parent.name
        pairs.append(ImagePair(Path(fields[1]).as_posix(), blurry, sharp, group))
    if missing and not allow_unpaired:
        raise DataError(f"{list_path}: {len(missing)} listed file(s) not found: {_listing(missing)} "
                        "(pass allow_unpaired=True to skip those lines)")
    duplicates = [name for name, n in Counter(p.name for p in pairs).items() if n > 1]
    if duplicates:
        raise DataError(f"{list_path}: blurry images listed more than once: {_listing(duplicates)}")
    split = _realblur_split(list_path.name)
    return _finish(root, "realblur", split, pairs, tuple(Path(p) for p in missing), str(list_path))


def _realblur_split(name):
    for split in ("train", "test", "val"):
        if f"_{split}_" in name or name.startswith(f"{split}_"):
            return split
    return None


def find_pairs(root, split=None, blur="blur", variant=None, allow_unpaired=False):
    """Recognises a dataset's layout and pairs its images.

    Looks, in order, for: a RealBlur pair list (`*_{split}_list.txt` in `root`, or `split` naming a
    .txt list), then in `root/split` (or `root` when `split` is None): `input/` + `target/` (flat),
    scene folders with `sharp/` (GoPro), or one of the folder pairs in `FOLDER_NAME_PAIRS`.

    Args:
        root: dataset folder.
        split: "train", "test", ... or None when `root` itself holds the pairs.
        blur: GoPro blur folder, "blur" or "blur_gamma".
        variant: RealBlur variant, "J" or "R", when both lists exist.
        allow_unpaired: skip files without a partner (with a warning) instead of raising.

    Returns:
        `PairSet`; `print(pairs.summary())` says what was found.

    Raises:
        DataError: the folder is missing or empty, the layout is not recognised (the message
            lists what is there), files are unpaired, or the choice of list file is ambiguous.
    """
    root = _require_folder(root, "dataset")
    if split is not None and split.endswith(".txt"):
        return realblur_pairs(root, split, allow_unpaired)
    lists = sorted(root.glob("*_list.txt"))
    if lists and split is not None:
        chosen = [p for p in lists if f"_{split}_" in p.name
                  and (variant is None or f"_{variant}_" in p.name or f"-{variant}_" in p.name)]
        if len(chosen) == 1:
            return realblur_pairs(root, chosen[0], allow_unpaired)
        if len(chosen) > 1:
            raise DataError(f"{root}: several pair lists match split {split!r}: "
                            f"{_listing([p.name for p in chosen])}; pass variant='J' or 'R', "
                            "or a list file")
    base = Path(root) / split if split else Path(root)
    if not base.is_dir():
        splits = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(f"{base}: split folder not found; {root} holds: "
                        f"{', '.join(splits) or 'nothing'}")
    subfolders = sorted(p.name for p in base.iterdir() if p.is_dir())
    if "input" in subfolders and "target" in subfolders:
        return flat_pairs(root, split, allow_unpaired)
    if any((base / name / "sharp").is_dir() for name in subfolders):
        if split is None:
            return gopro_pairs(base.parent, base.name, blur, allow_unpaired)
        return gopro_pairs(root, split, blur, allow_unpaired)
    for blurry_name, sharp_name in FOLDER_NAME_PAIRS:
        if blurry_name in subfolders and sharp_name in subfolders:
            pairs = folder_pairs(base / blurry_name, base / sharp_name, allow_unpaired=allow_unpaired)
            return PairSet(Path(root), "folders", split, pairs.pairs, pairs.unpaired, pairs.source)
    if split is None and lists:
        raise DataError(f"{root}: RealBlur pair lists found ({_listing([p.name for p in lists])}); "
                        "pass split='train' or 'test', or a list file name as split")
    if split is None and {"train", "test"} & set(subfolders):
        raise DataError(f"{root}: holds splits {', '.join(subfolders)}; pass split='train' or 'test'")
    raise DataError(
        f"{base}: dataset layout not recognised. Expected input/ + target/ (flat), "
        f"<scene>/blur/ + <scene>/sharp/ (GoPro), *_<split>_list.txt (RealBlur) or one of "
        f"{', '.join(a + '/ + ' + b + '/' for a, b in FOLDER_NAME_PAIRS[1:])}; "
        f"found sub-folders: {', '.join(subfolders) or 'none'}"
    )


KNOWN_SPLITS = ("train", "val", "valid", "validation", "test")


def summarize_dataset(root, blur="blur"):
    """What is in a dataset folder, every split (or RealBlur list) found, unpaired files included.

    Unlike `find_pairs`, problems are reported in the text rather than raised, so this is the
    first thing to run on a dataset you have just unpacked.

    Returns:
        a multi-line string, one `PairSet.summary()` (or error) per split.
    """
    root = _require_folder(root, "dataset")
    splits = [name for name in KNOWN_SPLITS if (root / name).is_dir()]
    lists = sorted(p.name for p in root.glob("*_list.txt"))
    attempts = [(f"list {name}", lambda name=name: realblur_pairs(root, name, allow_unpaired=True))
                for name in lists]
    attempts += [(f"split {split}",
                  lambda split=split: find_pairs(root, split, blur, allow_unpaired=True))
                 for split in splits]
    if not attempts:
        attempts = [(str(root), lambda: find_pairs(root, None, blur, allow_unpaired=True))]
    texts = []
    for label, attempt in attempts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                texts.append(attempt().summary())
            except DataError as error:
                texts.append(f"{label}: {error}")
    return "\n".join(texts)
