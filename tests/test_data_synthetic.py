"""Synthetic GoPro-style blur: trajectories, linear-light averaging, labels, sources, streams."""

import numpy as np
import pytest
from PIL import Image

from keras_mhdeblur.data import (BlurSettings, BuiltinSource, DataError, FolderSource, SyntheticPairs,
                                 SyntheticPyDataset, dead_leaves_image, synthetic_dataset, linear_to_srgb, make_synthetic_set, random_camera_trajectory,
                                 sharp_at_pose, srgb_to_linear, steady_camera_trajectory,
                                 synthesize_blur)
from keras_mhdeblur.data import sources

SIZE = (48, 64)


@pytest.fixture(scope="module")
def small_source():
    """Built-in source with a small dead-leaves pool, so tests stay fast."""
    return BuiltinSource(seed=0, dead_leaves_count=2, dead_leaves_size=128, photo_scales=(0.25,))


def gradient_energy(image):
    return np.mean(np.diff(image, axis=0) ** 2) + np.mean(np.diff(image, axis=1) ** 2)


def test_srgb_curves_are_exact_and_invert():
    np.testing.assert_allclose(srgb_to_linear([0.0, 0.04045, 0.5, 1.0]), [0.0, 0.04045 / 12.92, 0.21404114, 1.0],
                               rtol=1e-5)
    values = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(values)), values, atol=2e-6)


def test_trajectory_has_the_asked_length_and_rotation_range():
    rng = np.random.default_rng(0)
    shifts, angles = random_camera_trajectory(rng, 400, length=10.0, rotation=0.02)
    assert shifts.shape == (400, 2) and angles.shape == (400,)
    travelled = np.sum(np.linalg.norm(np.diff(shifts, axis=0), axis=1))
    assert 9.0 < travelled <= 10.0 + 1e-9  # sampling the path can only cut corners
    assert np.ptp(angles) == pytest.approx(0.02, rel=0.05)
    steps = np.linalg.norm(np.diff(shifts, axis=0), axis=1)
    assert steps.max() > 1.5 * steps.min()  # non-uniform speed
    still, _ = random_camera_trajectory(rng, 9, length=0.0, rotation=0.0)
    assert not still.any()


def test_steady_trajectory_is_nearly_straight_with_the_label_at_the_centre_of_the_smear():
    rng = np.random.default_rng(0)
    shake_offsets, steady_offsets = [], []
    for _ in range(50):
        shifts, angles = steady_camera_trajectory(rng, 15, length=20.0, rotation=0.02)
        travelled = np.sum(np.linalg.norm(np.diff(shifts, axis=0), axis=1))
        assert 19.5 < travelled <= 20.0 + 1e-9
        # A turn of at most 30 degrees: the ends are nearly a path length apart.
        assert np.linalg.norm(shifts[-1] - shifts[0]) > 0.95 * travelled
        assert np.ptp(angles) == pytest.approx(0.02) and np.all(np.diff(angles) * angles[-1] > 0)
        steady_offsets.append(np.linalg.norm(shifts.mean(axis=0) - shifts[7]))
        shake, _ = random_camera_trajectory(rng, 15, length=20.0, rotation=0.0)
        shake_offsets.append(np.linalg.norm(shake.mean(axis=0) - shake[7]))
    # The middle sub-frame sits near the centre of a steady smear, further off in a shake.
    assert np.mean(steady_offsets) < 0.05 * 20 < np.mean(shake_offsets)


def test_steady_share_picks_the_motion_and_leaves_earlier_recipes_unchanged(small_source):
    def pair(index, **settings):
        return SyntheticPairs(SIZE, seed=4, source=small_source, blur_pixels=(6, 12),
                              **settings).pair(index)

    for index in range(3):
        default, shake, steady = pair(index), pair(index, steady_share=0.0), pair(index, steady_share=1.0)
        np.testing.assert_array_equal(default.blurry, shake.blurry)  # no extra draw at share 0
        # Steady: sub-frames equally spaced in time move at a nearly constant pace.
        paces = np.linalg.norm(np.diff(steady.shifts, axis=0), axis=1)
        assert paces.max() < 1.6 * paces.min()
    with pytest.raises(ValueError, match="steady_share"):
        BlurSettings(steady_share=1.5)


def test_sharp_at_pose_renders_the_label_and_every_sub_frame(small_source):
    stream = SyntheticPairs(SIZE, seed=2, source=small_source, blur_pixels=(4, 10),
                            max_rotation_degrees=2.0, steady_share=0.5)
    for index in range(2):
        pair = stream.pair(index, return_subframes=True)
        region = stream.source_region(index)
        np.testing.assert_allclose(sharp_at_pose(region, SIZE, (0, 0)), pair.sharp, atol=1e-6)
        for k in (0, len(pair.shifts) - 1):
            np.testing.assert_allclose(sharp_at_pose(region, SIZE, pair.shifts[k], pair.angles[k]),
                                       pair.subframes[k], atol=1e-5)
        assert not np.allclose(pair.subframes[0], pair.sharp, atol=1e-3)


def test_blur_is_an_average_of_subframes_in_linear_light_and_the_label_is_one_of_them(small_source):
    image = dead_leaves_image(np.random.default_rng(1), 96, 112)
    settings = BlurSettings(blur_extent=(0.1, 0.2))
    pair = synthesize_blur(image, 3, settings, output_size=SIZE, return_subframes=True)
    count = len(pair.subframes)
    assert 9 <= count <= 15 and pair.subframes.shape == (count, *SIZE, 3)
    assert pair.label_index == count // 2
    np.testing.assert_array_equal(pair.subframes[pair.label_index], pair.sharp)
    # The label pose is the reference: the sharp image is the source's centre crop (up to sRGB round trip).
    top, left = (96 - SIZE[0]) // 2, (112 - SIZE[1]) // 2
    np.testing.assert_allclose(pair.sharp, image[top:top + SIZE[0], left:left + SIZE[1]] / 255, atol=1e-5)
    expected = linear_to_srgb(srgb_to_linear(pair.subframes).mean(axis=0))
    np.testing.assert_allclose(pair.blurry, expected, atol=1e-5)
    assert not np.allclose(pair.blurry, pair.sharp, atol=0.02)
    assert gradient_energy(pair.blurry) < 0.8 * gradient_energy(pair.sharp)
    assert pair.blurry.dtype == pair.sharp.dtype == np.float32 and pair.blurry.shape == (*SIZE, 3)


def test_random_label_picks_various_subframes(small_source):
    stream = SyntheticPairs(SIZE, seed=0, source=small_source, label="random")
    picks = set()
    for index in range(12):
        pair = stream.pair(index, return_subframes=True)
        np.testing.assert_array_equal(pair.subframes[pair.label_index], pair.sharp)
        picks.add(pair.label_index)
    assert len(picks) > 3
    with pytest.raises(ValueError, match="label"):
        BlurSettings(label="first")
    with pytest.raises(ValueError, match="num_subframes"):
        BlurSettings(num_subframes=(0, 3))


def test_streams_are_reproducible_and_seeds_differ(small_source):
    first = SyntheticPairs(SIZE, seed=4, source=small_source)
    again = SyntheticPairs(SIZE, seed=4, source=BuiltinSource(0, 2, 128, photo_scales=(0.25,)))
    for index in (0, 5):
        for a, b in zip(first.pair(index)[:2], again.pair(index)[:2]):
            np.testing.assert_array_equal(a, b)
    other = SyntheticPairs(SIZE, seed=5, source=small_source)
    assert not np.array_equal(first.pair(0).sharp, other.pair(0).sharp)
    blurry, sharp = first.arrays(3, start_index=4, workers=2)
    assert blurry.shape == sharp.shape == (3, *SIZE, 3)
    np.testing.assert_array_equal(blurry[1], first.pair(5).blurry)
    iterated = next(iter(first))
    np.testing.assert_array_equal(iterated[0], first.pair(0).blurry)


def test_noise_and_jpeg_change_only_the_blurry_image(small_source):
    clean = SyntheticPairs(SIZE, seed=2, source=small_source).pair(0)
    noisy = SyntheticPairs(SIZE, seed=2, source=small_source, noise_sigma=(0.02, 0.03), jpeg_quality=(60, 80)).pair(0)
    np.testing.assert_array_equal(clean.sharp, noisy.sharp)
    difference = noisy.blurry - clean.blurry
    assert 0.01 < difference.std() < 0.06


def test_tf_dataset_and_py_dataset_give_stream_batches(small_source):
    stream = SyntheticPairs((16, 16), seed=0, source=small_source, num_subframes=3)
    blurry, sharp = next(iter(synthetic_dataset(stream, batch_size=2, num_parallel_calls=2)))
    assert blurry.shape == sharp.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(blurry.numpy()[1], stream.pair(1).blurry)
    finite = list(synthetic_dataset(stream, batch_size=2, start_index=3, count=3))
    assert [b.shape[0] for b, _ in finite] == [2, 1]
    dataset = SyntheticPyDataset(stream, batch_size=2, steps_per_epoch=3)
    assert len(dataset) == 3
    np.testing.assert_array_equal(dataset[2][1][0], stream.pair(4).sharp)
    dataset.on_epoch_end()
    np.testing.assert_array_equal(dataset[0][0][0], stream.pair(6).blurry)


def test_prepare_builds_the_source_pools_up_front_and_changes_no_pair():
    source = BuiltinSource(seed=0, dead_leaves_count=2, dead_leaves_size=128, photo_scales=(0.25,))
    stream = SyntheticPairs((16, 16), seed=3, source=source, num_subframes=3)
    expected = SyntheticPairs((16, 16), seed=3, num_subframes=3, source=BuiltinSource(
        seed=0, dead_leaves_count=2, dead_leaves_size=128, photo_scales=(0.25,))).pair(5)
    assert stream.prepare() is stream
    assert len(source._dead_leaves) == 2 and (source._photos is not None) == bool(source.photo_paths)
    np.testing.assert_array_equal(stream.pair(5).blurry, expected.blurry)


def test_held_out_set_is_fixed():
    first = make_synthetic_set(2, (16, 24), seed=9, source=BuiltinSource(9, 1, 64, photos=False))
    second = make_synthetic_set(2, (16, 24), seed=9, source=BuiltinSource(9, 1, 64, photos=False))
    assert first[0].shape == (2, 16, 24, 3)
    np.testing.assert_array_equal(first[0], second[0])


def test_dead_leaves_images_are_seeded_varied_rgb():
    image = dead_leaves_image(np.random.default_rng(0), 40, 56)
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, dead_leaves_image(np.random.default_rng(0), 40, 56))
    assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    assert not np.array_equal(image, dead_leaves_image(np.random.default_rng(1), 40, 56))


def test_natural_dead_leaves_carry_textures_and_soft_edges():
    classic = dead_leaves_image(np.random.default_rng(4), 96, 96)
    natural = dead_leaves_image(np.random.default_rng(4), 96, 96, style="natural")
    assert natural.shape == (96, 96, 3) and natural.dtype == np.uint8
    np.testing.assert_array_equal(natural, dead_leaves_image(np.random.default_rng(4), 96, 96,
                                                              style="natural"))
    assert not np.array_equal(natural, classic)
    # Micro-texture: the typical (median) difference of neighbours, which edges are too sparse
    # to set, is larger than in the classic images, whose shapes are smooth inside.
    def fine_detail(image):
        return np.median(np.abs(np.diff(image.astype(np.float64), axis=1)))

    for seed in range(3):
        rng = np.random.default_rng
        assert (fine_detail(dead_leaves_image(rng(seed), 96, 96, style="natural"))
                > 1.3 * fine_detail(dead_leaves_image(rng(seed), 96, 96)))
    # Both textured styles, on large shapes whose insides set the typical difference.
    def inside_detail(style):
        return np.mean([fine_detail(dead_leaves_image(np.random.default_rng(seed), 96, 96,
                                                      min_radius=16, style=style))
                        for seed in range(6)])

    classic_inside = inside_detail("classic")
    assert inside_detail("natural") > 2 * classic_inside
    assert inside_detail("textured") > 2 * classic_inside
    with pytest.raises(ValueError, match="style must be one of.*'cartoon'"):
        dead_leaves_image(np.random.default_rng(0), 8, 8, style="cartoon")


def test_random_field_spectrum_and_gaussian_blur():
    from keras_mhdeblur.data.dead_leaves import _gaussian_blur, _power_law_field

    # The field's radially averaged power falls as 1/f^beta.
    for beta in (1.0, 2.5):
        field = _power_law_field(np.random.default_rng(0), 256, 256, beta)
        assert abs(field.std() - 1) < 1e-4 and abs(field.mean()) < 1e-4
        power = np.abs(np.fft.fft2(field)) ** 2
        frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256), indexing="ij"))
        bands = np.geomspace(0.02, 0.4, 9)
        means = [power[(frequency >= low) & (frequency < high)].mean()
                 for low, high in zip(bands[:-1], bands[1:])]
        centres = np.sqrt(bands[:-1] * bands[1:])
        slope = np.polyfit(np.log(centres), np.log(means), 1)[0]
        assert slope == pytest.approx(-beta, abs=0.15)
    # Stretched 4x along the x axis (angle 0): it changes faster down the rows than along them.
    oriented = _power_law_field(np.random.default_rng(1), 128, 128, 2.0, stretch=4.0, angle=0.0)
    along_x = np.abs(np.diff(oriented, axis=1)).mean()
    down_y = np.abs(np.diff(oriented, axis=0)).mean()
    assert down_y > 1.5 * along_x
    # A blurred impulse is a Gaussian of that sigma: unit mass, second moment sigma^2 per axis.
    impulse = np.zeros((41, 41, 1), np.float32)
    impulse[20, 20] = 1.0
    kernel = _gaussian_blur(impulse, 2.0)[..., 0]
    offsets = np.arange(41) - 20
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    assert (kernel.sum(axis=1) * offsets ** 2).sum() == pytest.approx(4.0, rel=0.02)
    flat = np.full((16, 16, 3), 0.3, np.float32)
    np.testing.assert_allclose(_gaussian_blur(flat, 3.0), flat, atol=1e-6)  # mirrored borders


def test_bundled_photos_are_read_from_the_package_and_optional(monkeypatch):
    paths = sources.bundled_photo_paths()
    assert all(path.is_file() and path.parent.name == "data" for path in paths)
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    assert sources.bundled_photo_paths() == []
    source = BuiltinSource(seed=0, dead_leaves_count=1, dead_leaves_size=64)
    assert source.photo_share == 0.0
    assert source.region(0, 0, 20, 30).shape == (20, 30, 3)


def test_folder_source_uses_the_folders_images_and_checks_them(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / name)
    stream = SyntheticPairs((16, 16), seed=0, source=str(tmp_path), num_subframes=3)
    assert stream.pair(0).blurry.shape == (16, 16, 3)
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"c\.png: cannot be read"):
        FolderSource(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        FolderSource(tmp_path / "empty", recursive=False)
    with pytest.raises(DataError, match="not found"):
        FolderSource(tmp_path / "missing")


def test_blur_in_pixels_is_the_same_smear_whatever_the_crop():
    image = dead_leaves_image(np.random.default_rng(2), 320, 320)
    settings = BlurSettings(blur_pixels=(12.0, 12.0), num_subframes=41)
    for size in ((32, 32), (160, 160)):
        pair = synthesize_blur(image, 5, settings, output_size=size)
        travelled = np.sum(np.linalg.norm(np.diff(pair.shifts, axis=0), axis=1))
        assert 10.0 < travelled <= 12.0 + 1e-6  # not a fraction of the crop
    assert BlurSettings(blur_pixels=(2, 30)).margin(32, 32) >= 30
    with pytest.raises(ValueError, match="blur_pixels"):
        BlurSettings(blur_pixels=(-1, 4))


def test_highlights_clip_in_the_label_and_smear_into_clipped_streaks():
    from keras_mhdeblur.data.synthetic import HIGHLIGHT_KNEE, boost_highlights

    linear = np.linspace(0, 1, 101, dtype=np.float32)
    boosted = boost_highlights(linear, 3.0)
    np.testing.assert_array_equal(boosted[linear <= HIGHLIGHT_KNEE], linear[linear <= HIGHLIGHT_KNEE])
    assert boosted[-1] == pytest.approx(3.0) and np.all(np.diff(boosted) > 0)
    # A small white lamp on a dark wall: its energy spreads into a streak that clips too.
    image = np.full((96, 96, 3), 40, np.uint8)
    image[44:52, 44:52] = 255
    plain = BlurSettings(blur_pixels=(16, 16), max_rotation_degrees=0)
    bright = BlurSettings(blur_pixels=(16, 16), max_rotation_degrees=0, highlight_gain=8.0)
    dim_pair = synthesize_blur(image, 7, plain, output_size=(64, 64))
    lit_pair = synthesize_blur(image, 7, bright, output_size=(64, 64))
    assert np.sum(lit_pair.blurry >= 0.999) > 2 * max(1, np.sum(dim_pair.blurry >= 0.999))
    np.testing.assert_allclose(lit_pair.sharp, dim_pair.sharp, atol=1e-5)  # white stays white
    with pytest.raises(ValueError, match="highlight_gain"):
        BlurSettings(highlight_gain=0.5)


def test_held_out_photos_never_reach_the_training_source():
    every = {path.name for path in sources.bundled_photo_paths("all")}
    train = {path.name for path in sources.bundled_photo_paths("train")}
    held_out = {path.name for path in sources.bundled_photo_paths("heldout")}
    if not every:
        pytest.skip("scikit-image is not installed: the built-in source is dead leaves only")
    assert held_out == set(sources.HELD_OUT_PHOTOS) & every and not train & held_out
    assert train | held_out == every
    stream = SyntheticPairs(32, seed=3, source="builtin:heldout")
    assert stream.source.photo_share == 1.0  # photos only: no dead leaves of any seed
    assert {p.name for p in stream.source.photo_paths} == held_out
    assert {p.name for p in SyntheticPairs(32, source="builtin:train").source.photo_paths} == train
    with pytest.raises(ValueError, match="photos must be one of"):
        sources.bundled_photo_paths("some")


def test_other_packages_photos_are_added_by_name_and_must_be_installed(tmp_path, monkeypatch):
    # A stand-in for scikit-learn's package folder, so the test needs no scikit-learn.
    images = tmp_path / "sklearn" / "datasets" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("china.jpg", "flower.jpg"):
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(images / name)
    find_spec = sources.importlib.util.find_spec
    fake = type("Spec", (), {"submodule_search_locations": [str(tmp_path / "sklearn")]})
    monkeypatch.setattr(sources.importlib.util, "find_spec",
                        lambda name: fake if name == "sklearn" else find_spec(name))
    skimage_only = sources.bundled_photo_paths("train")
    both = sources.bundled_photo_paths("train", ["skimage", "sklearn"])
    assert both == skimage_only + [images / "china.jpg", images / "flower.jpg"]
    # Other packages' photos are never held out: the held-out set stays comparable.
    assert sources.bundled_photo_paths("heldout", ["skimage", "sklearn"]) == \
        sources.bundled_photo_paths("heldout")
    source = SyntheticPairs(24, seed=0, source="builtin:train",
                            source_options={"photo_packages": ["sklearn"], "photo_share": 1.0})
    assert source.source.photo_paths == [images / "china.jpg", images / "flower.jpg"]
    assert source.pair(0).sharp.shape == (24, 24, 3)
    (images / "flower.jpg").unlink()  # a recipe must not train on fewer photos than it names
    with pytest.raises(ValueError, match=r"sklearn names 2 photo\(s\).*pip install scikit-learn"):
        BuiltinSource(photo_packages=["sklearn"])
    with pytest.raises(ValueError, match="photo_packages must be a list of skimage"):
        BuiltinSource(photos=False, photo_packages=["pillow"])
    with pytest.raises(ValueError, match="photo_packages must be a list"):
        sources.bundled_photo_paths("all", "sklearn")


def test_grey_npz_photos_and_other_sets_of_one_package(tmp_path, monkeypatch):
    # A stand-in for PyWavelets' package folder: grey images in .npz files under "data".
    folder = tmp_path / "pywt" / "data"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name in ("ascent.npz", "aero.npz"):
        np.savez(folder / name, data=rng.integers(0, 256, (40, 50), dtype=np.uint8))
    find_spec = sources.importlib.util.find_spec
    fake = type("Spec", (), {"submodule_search_locations": [str(tmp_path / "pywt")]})
    monkeypatch.setattr(sources.importlib.util, "find_spec",
                        lambda name: fake if name == "pywt" else find_spec(name))
    stream = SyntheticPairs(24, seed=0, source="builtin:train",
                            source_options={"photo_packages": ["pywt"], "photo_share": 1.0})
    assert stream.source.photo_paths == [folder / "ascent.npz", folder / "aero.npz"]
    region = stream.source.region(0, 0, 24, 24)
    assert region.dtype == np.uint8 and region.shape == (24, 24, 3)
    assert np.array_equal(region[..., 0], region[..., 1]) and np.array_equal(region[..., 0], region[..., 2])
    # A set named after its contents may live in another set's package (skimage_more in skimage).
    module, _, _, names = sources.BUNDLED_PHOTOS["skimage_more"]
    assert module == "skimage" and not set(names) & set(sources.SKIMAGE_PHOTOS)
    np.savez(folder / "aero.npz", data=np.zeros((4, 5, 3), np.uint8))  # not one grey image
    with pytest.raises(DataError, match=r"aero\.npz: expected a 2-D uint8 image"):
        sources.read_bundled_photo(folder / "aero.npz")
    (folder / "ascent.npz").write_bytes(b"damaged")
    with pytest.raises(DataError, match=r"ascent\.npz: cannot read a grey image"):
        sources.read_bundled_photo(folder / "ascent.npz")


def test_photo_sets_never_share_a_photo_and_may_sit_at_a_packages_top(tmp_path, monkeypatch):
    named = [(module, name) for module, _, _, names in sources.BUNDLED_PHOTOS.values()
             for name in names]
    assert len(set(named)) == len(named)  # a photo in two sets would count twice
    extra = {name for key, (_, _, _, names) in sources.BUNDLED_PHOTOS.items() if key != "skimage"
             for name in names}
    assert not extra & set(sources.HELD_OUT_PHOTOS) and "lena.jpg" not in extra
    # imgaug keeps its photo next to its code: folder "." is the package's own folder.
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "quokka.jpg")
    find_spec = sources.importlib.util.find_spec
    fake = type("Spec", (), {"submodule_search_locations": [str(tmp_path)]})
    monkeypatch.setattr(sources.importlib.util, "find_spec",
                        lambda name: fake if name == "imgaug" else find_spec(name))
    assert sources.bundled_photo_paths("train", ["imgaug"]) == [tmp_path / "quokka.jpg"]
    (tmp_path / "quokka.jpg").unlink()
    with pytest.raises(ValueError, match=r"imgaug names 1 photo\(s\).*pip install imgaug"):
        sources.bundled_photo_paths("train", ["imgaug"])


def test_realistic_settings_stay_seeded():
    settings = dict(blur_pixels=(2, 24), noise_sigma=(0, 0.01), jpeg_quality=(75, 95),
                    highlight_gain=(1, 3), num_subframes=(13, 25))
    first = SyntheticPairs(40, seed=5, source="builtin:train", **settings).arrays(3, workers=1)
    again = SyntheticPairs(40, seed=5, source="builtin:train", **settings).arrays(3, workers=2)
    other = SyntheticPairs(40, seed=6, source="builtin:train", **settings).arrays(3, workers=1)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.allclose(first[0], other[0])


def test_log_blur_lengths_give_every_octave_the_same_share():
    rng = np.random.default_rng(0)
    log = BlurSettings(blur_pixels=(1, 32), blur_length_scale="log")
    lengths = np.array([log.path_length(rng, 64, 64) for _ in range(20000)])
    assert lengths.min() >= 1 and lengths.max() <= 32
    shares = np.histogram(lengths, bins=[1, 2, 4, 8, 16, 32])[0] / len(lengths)
    np.testing.assert_allclose(shares, 0.2, atol=0.015)  # linear would give 1-2 px 3%
    linear = BlurSettings(blur_pixels=(1, 32))
    linear_lengths = np.array([linear.path_length(rng, 64, 64) for _ in range(20000)])
    assert np.mean(linear_lengths < 2) < 0.05
    # A range relative to the crop is drawn the same way, in pixels of that crop.
    relative = BlurSettings(blur_extent=(0.02, 0.16), blur_length_scale="log")
    assert 0.02 * 100 <= relative.path_length(rng, 100, 200) <= 0.16 * 100
    with pytest.raises(ValueError, match="blur_length_scale must be one of"):
        BlurSettings(blur_length_scale="cubic")
    with pytest.raises(ValueError, match="above 0"):
        BlurSettings(blur_pixels=(0, 8), blur_length_scale="log")


def test_source_options_reach_the_builtin_and_folder_sources(tmp_path):
    stream = SyntheticPairs(32, seed=1, source="builtin:train",
                            source_options={"dead_leaves_count": 3, "dead_leaves_size": 96})
    assert stream.source.dead_leaves_count == 3 and stream.source.photo_share == 0.5
    first = stream.arrays(2, workers=1)
    again = SyntheticPairs(32, seed=1, source="builtin:train",
                           source_options={"dead_leaves_count": 3, "dead_leaves_size": 96})
    np.testing.assert_array_equal(first[0], again.arrays(2, workers=1)[0])
    # The held-out source stays photos only, whatever the options say.
    held_out = SyntheticPairs(32, source="builtin:heldout", source_options={"photo_share": 0.1})
    assert held_out.source.photo_share == (1.0 if held_out.source.photo_paths else 0.0)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    folder = SyntheticPairs(16, source=str(tmp_path), source_options={"crops_per_image": 2})
    assert folder.source.crops_per_image == 2
    natural = SyntheticPairs(32, seed=1, source="builtin:train",
                             source_options={"dead_leaves_count": 3, "dead_leaves_size": 96,
                                             "dead_leaves_style": "natural", "photo_share": 0.0})
    assert natural.source.dead_leaves_style == "natural"
    assert not np.array_equal(natural.arrays(1, workers=1)[1],
                              SyntheticPairs(32, seed=1, source="builtin:train", source_options={
                                  "dead_leaves_count": 3, "dead_leaves_size": 96,
                                  "photo_share": 0.0}).arrays(1, workers=1)[1])
    with pytest.raises(ValueError, match="dead_leaves_style must be one of"):
        SyntheticPairs(16, source_options={"dead_leaves_style": "vivid"})
    with pytest.raises(ValueError, match="unknown option.*dead_leaves_cont.*known: dead_leaves_count"):
        SyntheticPairs(16, source_options={"dead_leaves_cont": 3})
    with pytest.raises(ValueError, match="unknown option.*photo_share.*folder"):
        SyntheticPairs(16, source=str(tmp_path), source_options={"photo_share": 0.3})


def test_varied_photo_regions_rescale_continuously_and_vary_colours():
    # A grey ramp along x: a region's span of values tells the scale it was drawn at.
    ramp = np.broadcast_to(np.linspace(0, 255, 1000)[None, :, None], (1000, 1000, 3))
    ramp = np.round(ramp).astype(np.uint8)
    plain = dict(white_balance=(1, 1), saturation=(1, 1), gamma=(1, 1))
    spans = []
    for index in range(40):
        region = sources.varied_photo_region(ramp, np.random.default_rng(index), 48, 48,
                                             smallest_scale=0.5, **plain)
        assert region.shape == (48, 48, 3) and region.dtype == np.uint8
        spans.append(float(region[..., 0].max()) - float(region[..., 0].min()))
    spans = np.array(spans) / (255 / 999)  # in source pixels across the 48 of the region
    assert spans.min() > 48 * 0.9 and spans.max() < 96 * 1.1  # scales within [0.5, 1]
    assert spans.max() - spans.min() > 30  # drawn anew, not one fixed scale
    again = sources.varied_photo_region(ramp, np.random.default_rng(3), 48, 48, **plain)
    np.testing.assert_array_equal(again, sources.varied_photo_region(
        ramp, np.random.default_rng(3), 48, 48, **plain))

    # A red photo: every channel order comes up, and grey gets tinted by the white balance.
    red = np.broadcast_to(np.array([200, 30, 30], np.uint8), (64, 64, 3))
    dominant = {int(np.argmax(sources.varied_photo_region(red, np.random.default_rng(i), 32, 32)
                              .mean(axis=(0, 1)))) for i in range(40)}
    assert dominant == {0, 1, 2}
    grey = np.full((64, 64, 3), 128, np.uint8)
    tints = [np.ptp(sources.varied_photo_region(grey, np.random.default_rng(i), 32, 32)
                    .mean(axis=(0, 1))) for i in range(20)]
    assert max(tints) > 10

    # A photo smaller than the region is mirrored, never upscaled (which would blur it).
    small = np.random.default_rng(0).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    region = sources.varied_photo_region(small, np.random.default_rng(1), 30, 30, **plain)
    assert region.shape == (30, 30, 3)
    assert {tuple(pixel) for pixel in region.reshape(-1, 3)} <= {tuple(pixel) for pixel in
                                                                 small.reshape(-1, 3)}


def test_photo_variation_is_a_seeded_source_option():
    options = {"photo_share": 1.0, "dead_leaves_count": 1, "dead_leaves_size": 64}
    varied = SyntheticPairs(48, seed=2, source="builtin:train",
                            source_options={**options, "photo_variation": True})
    assert varied.source.photo_variation and varied.source.photo_paths  # the test extra has them
    sharp = varied.arrays(3, workers=1)[1]
    np.testing.assert_array_equal(sharp, SyntheticPairs(
        48, seed=2, source="builtin:train",
        source_options={**options, "photo_variation": True}).arrays(3, workers=1)[1])
    plain = SyntheticPairs(48, seed=2, source="builtin:train", source_options=options)
    assert not plain.source.photo_variation
    assert not np.array_equal(sharp, plain.arrays(3, workers=1)[1])
    with pytest.raises(ValueError, match="photo_variation must be true or false"):
        BuiltinSource(photo_variation="yes")


def test_photo_variation_draws_between_the_smallest_and_largest_photo_scales(tmp_path,
                                                                              monkeypatch):
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(tmp_path / "photo.png")
    source = BuiltinSource(0, photos=False, photo_scales=(0.5, 0.25), photo_variation=True)
    source.photo_paths, source.photo_share = [tmp_path / "photo.png"], 1.0
    calls = []
    monkeypatch.setattr(sources, "varied_photo_region", lambda image, rng, h, w, smallest_scale:
                        calls.append((image.shape, smallest_scale)) or np.zeros((h, w, 3)))
    source.region(0, 0, 32, 32)
    # Framed from the photo at its largest scale, down to half of that (0.25 of the photo).
    assert calls == [((200, 300, 3), 0.5)]
