"""Paired datasets: layouts, pairing by name, bad input, augmentation, pipelines (tiny images)."""

import keras
import numpy as np
import pytest
from PIL import Image

from keras_mhdeblur.data import (DataError, PairedPyDataset, augment_pair, augment_pair_tf, dihedral_transform,
                                 undo_dihedral_transform,
                                 evaluation_dataset, find_pairs, flat_pairs, folder_pairs, gopro_pairs,
                                 iter_evaluation_pairs, read_image, realblur_pairs, summarize_dataset,
                                 training_dataset)
from keras_mhdeblur.data.augment import Augmentation

HEIGHT, WIDTH = 48, 64


def tagged_image(tag, height=HEIGHT, width=WIDTH, seed=None):
    """A random uint8 RGB image whose top-left pixel's red value is `tag` (identifies the file)."""
    rng = np.random.default_rng(tag if seed is None else seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[0, 0, 0] = tag
    return image


def save(path, image, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, **kwargs).save(path)
    return path


def make_flat(folder, names, tags=None):
    for i, name in enumerate(names):
        tag = tags[i] if tags else i
        save(folder / "input" / name, tagged_image(tag))
        save(folder / "target" / name, tagged_image(tag, seed=1000 + tag))


def make_gopro(root, split, scenes, frames=3):
    for s, scene in enumerate(scenes):
        for f in range(frames):
            tag = 10 * s + f
            name = f"{f:06d}.png"
            save(root / split / scene / "blur" / name, tagged_image(tag))
            save(root / split / scene / "blur_gamma" / name, tagged_image(tag + 100))
            save(root / split / scene / "sharp" / name, tagged_image(tag, seed=1000 + tag))


def tag_of(path):
    return np.asarray(Image.open(path))[0, 0, 0]


# --------------------------------------------------------------------------------------------
# Layouts


def test_gopro_layout_is_found_and_grouped_by_scene(tmp_path):
    make_gopro(tmp_path, "train", ["GOPR0372_07_00", "GOPR0374_11_01"])
    make_gopro(tmp_path, "test", ["GOPR0384_11_00"], frames=2)
    pairs = find_pairs(tmp_path, "train")
    assert pairs.layout == "gopro" and pairs.split == "train" and len(pairs) == 6
    assert pairs.group_counts() == {"GOPR0372_07_00": 3, "GOPR0374_11_01": 3}
    assert pairs[0].name == "GOPR0372_07_00/000000.png"
    assert all(pair.blurry.parent.name == "blur" for pair in pairs)
    assert all(tag_of(pair.blurry) == tag_of(pair.sharp) for pair in pairs)
    assert "GOPR0374_11_01 (3)" in pairs.summary() and "6 pairs" in pairs.summary()
    gamma = gopro_pairs(tmp_path, "train", blur="blur_gamma")
    assert all(pair.blurry.parent.name == "blur_gamma" for pair in gamma)
    assert len(find_pairs(tmp_path, "test")) == 2
    assert len(find_pairs(tmp_path / "test")) == 2  # a split folder given directly


def test_summarize_dataset_reports_every_split_without_raising(tmp_path):
    make_gopro(tmp_path, "train", ["s1", "s2"], frames=2)
    make_gopro(tmp_path, "test", ["s3"], frames=1)
    (tmp_path / "test" / "s3" / "sharp" / "000009.png").write_bytes(b"")  # a sharp frame without blur
    text = summarize_dataset(tmp_path)
    assert "split 'train': 4 pairs" in text and "s1 (2), s2 (2)" in text
    assert "split 'test': 1 pair\n" in text and "1 unpaired" in text and "000009.png" in text
    assert "layout not recognised" in summarize_dataset(tmp_path / "train" / "s1" / "blur")


def test_flat_layout_with_split_and_without(tmp_path):
    make_flat(tmp_path / "train", ["a.png", "b.png", "c.png"])
    make_flat(tmp_path / "test", ["x.png"])
    pairs = find_pairs(tmp_path, "train")
    assert pairs.layout == "flat" and pairs.names == ["a.png", "b.png", "c.png"]
    assert find_pairs(tmp_path / "test").names == ["x.png"]
    assert flat_pairs(tmp_path, "test").split == "test"
    with pytest.raises(DataError, match="pass split"):
        find_pairs(tmp_path)


def test_realblur_lists_take_sharp_first_and_need_a_variant_when_ambiguous(tmp_path):
    lines = {}
    for variant in ("J", "R"):
        folder = f"RealBlur-{variant}_ECC_IMCORR_centroid_itensity_ref"
        entries = []
        for scene, tag in (("scene001", 1), ("scene002", 2)):
            save(tmp_path / folder / scene / "gt" / "gt_1.png", tagged_image(tag, seed=1000 + tag))
            save(tmp_path / folder / scene / "blur" / "blur_1.png", tagged_image(tag))
            entries.append(f"{folder}/{scene}/gt/gt_1.png {folder}/{scene}/blur/blur_1.png")
        lines[variant] = entries
        (tmp_path / f"RealBlur_{variant}_train_list.txt").write_text("\n".join(entries) + "\n")
    with pytest.raises(DataError, match="variant"):
        find_pairs(tmp_path, "train")
    pairs = find_pairs(tmp_path, "train", variant="J")
    assert pairs.layout == "realblur" and len(pairs) == 2 and pairs.split == "train"
    assert all(pair.blurry.name == "blur_1.png" and pair.sharp.name == "gt_1.png" for pair in pairs)
    assert pairs.group_counts() == {"scene001": 1, "scene002": 1}
    direct = realblur_pairs(tmp_path, "RealBlur_R_train_list.txt")
    assert "RealBlur-R" in direct[0].name
    (tmp_path / "bad_list.txt").write_text(lines["J"][0] + " extra\n")
    with pytest.raises(DataError, match=r"bad_list.txt:1"):
        realblur_pairs(tmp_path, "bad_list.txt")


def test_any_two_folders_pair_by_name_across_extensions(tmp_path):
    save(tmp_path / "lq" / "one.png", tagged_image(1))
    save(tmp_path / "gt" / "one.bmp", tagged_image(1, seed=7))
    save(tmp_path / "lq" / "two.png", tagged_image(2))
    save(tmp_path / "gt" / "two.png", tagged_image(2, seed=8))
    pairs = find_pairs(tmp_path)
    assert pairs.layout == "folders" and pairs.names == ["one.png", "two.png"]
    assert pairs[0].sharp.suffix == ".bmp"
    explicit = folder_pairs(tmp_path / "lq", tmp_path / "gt")
    assert explicit.names == pairs.names


def test_pairing_is_by_name_never_by_sort_order(tmp_path):
    # Blurry {a, c, d, x}, sharp {a, b, c, d}: pairing by position would match c with b, ...
    for name, tag in (("a", 1), ("c", 3), ("d", 4), ("x", 9)):
        save(tmp_path / "input" / f"{name}.png", tagged_image(tag))
    for name, tag in (("d", 4), ("b", 2), ("a", 1), ("c", 3)):  # written in another order
        save(tmp_path / "target" / f"{name}.png", tagged_image(tag, seed=50 + tag))
    with pytest.raises(DataError, match=r"2 file\(s\) have no partner.*input/x\.png.*target/b\.png.*allow_unpaired"):
        find_pairs(tmp_path)
    with pytest.warns(UserWarning, match="unpaired"):
        pairs = find_pairs(tmp_path, allow_unpaired=True)
    assert pairs.names == ["a.png", "c.png", "d.png"]
    assert [tag_of(p.blurry) for p in pairs] == [tag_of(p.sharp) for p in pairs] == [1, 3, 4]
    assert {p.name for p in pairs.unpaired} == {"b.png", "x.png"}
    assert "2 unpaired" in pairs.summary()


def test_same_name_with_two_extensions_is_ambiguous(tmp_path):
    save(tmp_path / "input" / "a.png", tagged_image(1))
    save(tmp_path / "input" / "a.jpg", tagged_image(1))
    save(tmp_path / "target" / "a.png", tagged_image(1))
    with pytest.raises(DataError, match="same name"):
        find_pairs(tmp_path)


def test_missing_empty_and_unrecognised_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        find_pairs(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not recognised.*found sub-folders: none"):
        find_pairs(tmp_path)
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(DataError, match="no images found"):
        find_pairs(tmp_path)
    with pytest.raises(DataError, match="split folder not found"):
        find_pairs(tmp_path, "train")
    (tmp_path / "misc").mkdir()
    (tmp_path / "input").rmdir()
    with pytest.raises(DataError, match="found sub-folders: misc, target"):
        find_pairs(tmp_path)


def test_holdout_keeps_scenes_whole(tmp_path):
    make_gopro(tmp_path, "train", ["s1", "s2", "s3", "s4"], frames=2)
    rest, held = find_pairs(tmp_path, "train").holdout(3, seed=0)
    assert len(held) == 4 and len(rest) == 4
    assert not set(held.group_counts()) & set(rest.group_counts())


# --------------------------------------------------------------------------------------------
# Bad input and conversions


def test_conversions_are_the_same_on_the_pillow_and_tf_paths(tmp_path):
    import tensorflow as tf

    rgb = tagged_image(5)
    gray = rgb[..., 1]
    gray16 = np.random.default_rng(0).integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16)
    rgb16 = np.random.default_rng(1).integers(0, 65536, (HEIGHT, WIDTH, 3), dtype=np.uint16)
    palette = Image.fromarray(rgb).quantize(16)
    expected = {
        "gray": np.repeat(gray[..., None], 3, -1) / 255,
        "rgba": rgb / 255,
        "gray16": np.repeat(gray16[..., None], 3, -1) / 65535,
        "rgb16": rgb16 / 65535,
        "palette": np.asarray(palette.convert("RGB")) / 255,
    }
    save(tmp_path / "input" / "gray.png", gray)
    save(tmp_path / "input" / "rgba.png", np.dstack([rgb, rgb[..., :1]]), mode="RGBA")
    save(tmp_path / "input" / "gray16.png", gray16)
    (tmp_path / "input" / "rgb16.png").write_bytes(tf.io.encode_png(rgb16).numpy())
    palette.save(tmp_path / "input" / "palette.png")
    for name in expected:
        save(tmp_path / "target" / f"{name}.png", rgb)
    pairs = find_pairs(tmp_path)
    pillow = {name.removesuffix(".png"): blurry for name, blurry, _ in iter_evaluation_pairs(pairs)}
    graph = {name.numpy()[0].decode().removesuffix(".png"): blurry.numpy()[0]
             for name, blurry, _ in evaluation_dataset(pairs, with_names=True)}
    for name, want in expected.items():
        assert graph[name].shape == (HEIGHT, WIDTH, 3) and graph[name].dtype == np.float32
        np.testing.assert_allclose(graph[name], want, atol=1e-6, err_msg=name)
        # Pillow reads 16-bit colour PNGs at 8-bit precision (documented in io.py).
        np.testing.assert_allclose(pillow[name], want, atol=1 / 255 if name == "rgb16" else 1e-6, err_msg=name)
    np.testing.assert_allclose(read_image(tmp_path / "input" / "gray16.png"), expected["gray16"], atol=1e-6)


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "empty"])
def test_corrupt_files_stop_before_tensorflow_with_the_file_named(tmp_path, damage):
    make_flat(tmp_path, ["a.png", "b.png"])
    bad = tmp_path / "target" / "b.png"
    content = {"random_bytes": np.random.default_rng(0).bytes(500),
               "truncated": bad.read_bytes()[:200], "empty": b""}[damage]
    bad.write_bytes(content)
    pairs = find_pairs(tmp_path)
    with pytest.raises(DataError, match=r"target/b\.png: cannot be read"):
        training_dataset(pairs, batch_size=1, crop_size=16)
    with pytest.raises(DataError, match=r"b\.png"):
        PairedPyDataset(pairs, batch_size=1, crop_size=16)


def test_size_mismatch_and_too_small_for_the_crop(tmp_path):
    make_flat(tmp_path, ["a.png", "b.png"])
    save(tmp_path / "target" / "b.png", tagged_image(1, height=HEIGHT, width=WIDTH - 1))
    with pytest.raises(DataError, match=r"pair 'b.png'.*48x64 \(HxW\) but sharp .* 48x63"):
        training_dataset(find_pairs(tmp_path), batch_size=1, crop_size=16)
    save(tmp_path / "target" / "b.png", tagged_image(1))
    with pytest.raises(DataError, match=r"smaller than the 56x56 crop"):
        training_dataset(find_pairs(tmp_path), batch_size=1, crop_size=56)
    with pytest.raises(DataError, match=r"smaller than the 56x56 crop"):
        list(iter_evaluation_pairs(find_pairs(tmp_path), center_crop=56))


def test_unsupported_mode_is_refused(tmp_path):
    make_flat(tmp_path, ["a.png"])
    Image.fromarray(np.zeros((HEIGHT, WIDTH), np.float32), mode="F").save(tmp_path / "input" / "b.tif")
    save(tmp_path / "target" / "b.png", tagged_image(2))
    with pytest.raises(DataError, match=r"b\.tif: unsupported image mode 'F'"):
        find_pairs(tmp_path).check()


def test_pillow_only_formats_go_through_numpy_function(tmp_path):
    make_flat(tmp_path, ["a.png"])
    save(tmp_path / "input" / "b.tif", tagged_image(2))
    save(tmp_path / "target" / "b.png", tagged_image(2))
    pairs = find_pairs(tmp_path)
    assert [info.tf_decodable for info in pairs.check()] == [True, False]
    blurry = [b.numpy()[0] for b, _ in evaluation_dataset(pairs)]
    np.testing.assert_allclose(blurry[1], tagged_image(2) / 255, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Augmentation


def _state_of(original, augmented):
    """Which dihedral state turns uint8 `original` into float `augmented`."""
    augmented = np.round(augmented * 255).astype(np.uint8)
    matches = [s for s in range(8) if np.array_equal(dihedral_transform(original, s), augmented)]
    assert len(matches) == 1
    return matches[0]


def test_every_dihedral_state_is_undone_and_the_eight_differ():
    image = np.arange(2 * 3 * 5 * 3).reshape(2, 3, 5, 3)  # a batch of non-square images
    moved = [dihedral_transform(image, state) for state in range(8)]
    for state, copy in enumerate(moved):
        np.testing.assert_array_equal(undo_dihedral_transform(copy, state), image)
    assert moved[4].shape == (2, 5, 3, 3) and moved[3].shape == image.shape
    square = np.arange(4 * 4 * 3).reshape(4, 4, 3)
    assert len({dihedral_transform(square, state).tobytes() for state in range(8)}) == 8


def test_numpy_augmentation_moves_both_images_alike_and_reaches_all_8_states():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    states = set()
    for seed in range(80):
        blurry, sharp = augment_pair(image, image.copy(), np.random.default_rng(seed), Augmentation(crop_size=4))
        np.testing.assert_array_equal(blurry, sharp)
        states.add(_state_of(image, blurry))
    assert states == set(range(8))
    big = tagged_image(3)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        augmentation = Augmentation(crop_size=(16, 24), saturation_jitter=0.2, saturation_probability=1.0)
        blurry, sharp = augment_pair(big, big.copy(), rng, augmentation)
        assert blurry.shape == (16, 24, 3) and np.array_equal(blurry, sharp)


def test_tf_augmentation_moves_both_images_alike_and_reaches_all_8_states():
    import tensorflow as tf

    image = tf.constant(np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3))
    augmentation = Augmentation(crop_size=4, saturation_jitter=0.2, saturation_probability=0.0)
    augment = tf.function(lambda seed: augment_pair_tf(image, image, seed, augmentation), autograph=False)
    states = set()
    for seed in range(80):
        blurry, sharp = augment(tf.constant([7, seed], tf.int64))
        np.testing.assert_array_equal(blurry.numpy(), sharp.numpy())
        states.add(_state_of(image.numpy(), blurry.numpy()))
    assert states == set(range(8))


# --------------------------------------------------------------------------------------------
# Pipelines


def _identical_pairs(folder, count=4):
    """Flat dataset whose blurry and sharp images are the same file contents."""
    for i in range(count):
        save(folder / "input" / f"{i}.png", tagged_image(i))
        save(folder / "target" / f"{i}.png", tagged_image(i))
    return find_pairs(folder)


def test_tf_pipeline_batches_are_seeded_and_augment_both_images_alike(tmp_path):
    pairs = _identical_pairs(tmp_path)

    def first_batches(seed, **kwargs):
        dataset = training_dataset(pairs, batch_size=3, crop_size=16, seed=seed, saturation_jitter=0.2, **kwargs)
        return [(b.numpy(), s.numpy()) for b, s in dataset.take(3)]

    batches = first_batches(0)
    for blurry, sharp in batches:
        assert blurry.shape == (3, 16, 16, 3) and blurry.dtype == np.float32
        assert 0 <= blurry.min() and blurry.max() <= 1
        np.testing.assert_array_equal(blurry, sharp)
    again = first_batches(0, cache=True)
    for (b1, _), (b2, _) in zip(batches, again):
        np.testing.assert_array_equal(b1, b2)
    other = first_batches(1)
    assert not all(np.array_equal(b1, b2) for (b1, _), (b2, _) in zip(batches, other))


def test_tf_pipeline_resumes_at_a_step_with_the_same_batches(tmp_path):
    pairs = _identical_pairs(tmp_path)
    full = [b.numpy() for b, _ in training_dataset(pairs, batch_size=3, crop_size=16).take(4)]
    resumed = [b.numpy() for b, _ in training_dataset(pairs, 3, 16, start_step=2).take(2)]
    for expected, got in zip(full[2:], resumed):
        np.testing.assert_array_equal(expected, got)


def test_py_dataset_is_seeded_and_augments_both_images_alike(tmp_path):
    pairs = _identical_pairs(tmp_path)
    dataset = PairedPyDataset(pairs, batch_size=3, crop_size=16, seed=0, steps_per_epoch=2)
    assert len(dataset) == 2
    blurry, sharp = dataset[1]
    assert blurry.shape == (3, 16, 16, 3) and blurry.dtype == np.float32
    np.testing.assert_array_equal(blurry, sharp)
    np.testing.assert_array_equal(PairedPyDataset(pairs, 3, 16, seed=0, steps_per_epoch=2, cache=True)[1][0], blurry)
    assert not np.array_equal(PairedPyDataset(pairs, 3, 16, seed=1, steps_per_epoch=2)[1][0], blurry)
    dataset.on_epoch_end()
    assert not np.array_equal(dataset[1][0], blurry)  # a new epoch brings new crops
    # A resumed training starts the stream at a sample number: batch 1 of epoch 1 is batch 0
    # of a dataset that starts 3 batches in.
    resumed = PairedPyDataset(pairs, 3, 16, seed=0, steps_per_epoch=2, start_sample=3 * 3)
    np.testing.assert_array_equal(resumed[0][0], dataset[1][0])
    # One pass over 4 pairs in 2 batches of 2 visits every pair once.
    tags = np.concatenate([PairedPyDataset(pairs, 2, None, seed=3, dihedral=False)[i][0][:, 0, 0, 0]
                           for i in range(2)])
    assert sorted(np.round(tags * 255).astype(int).tolist()) == [0, 1, 2, 3]


def test_evaluation_yields_whole_or_centre_cropped_images_with_names(tmp_path):
    make_flat(tmp_path, ["b.png", "a.png"])
    names = [name for name, _, _ in iter_evaluation_pairs(find_pairs(tmp_path))]
    assert names == ["a.png", "b.png"]
    name, blurry, sharp = next(iter(evaluation_dataset(find_pairs(tmp_path), center_crop=(16, 32), with_names=True)))
    assert name.numpy().tolist() == [b"a.png"] and blurry.shape == (1, 16, 32, 3) and sharp.shape == (1, 16, 32, 3)
    _, whole, _ = next(iter_evaluation_pairs(find_pairs(tmp_path)))
    np.testing.assert_array_equal(blurry.numpy()[0], whole[16:32, 16:48])
    blurry, sharp = next(iter(evaluation_dataset(find_pairs(tmp_path))))
    assert blurry.shape == (1, HEIGHT, WIDTH, 3)


def test_model_fit_takes_the_tf_dataset_and_the_py_dataset(tmp_path):
    pairs = _identical_pairs(tmp_path)
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    model.compile(optimizer="adam", loss="mae")
    dataset = training_dataset(pairs, batch_size=2, crop_size=16)
    history = model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    history = model.fit(PairedPyDataset(pairs, batch_size=2, crop_size=16, steps_per_epoch=2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_pair_set_can_be_a_plain_list_of_pairs(tmp_path):
    pairs = _identical_pairs(tmp_path)
    assert len(list(iter_evaluation_pairs(list(pairs)[:2]))) == 2
    with pytest.raises(DataError, match="no image pairs"):
        training_dataset([], batch_size=1)

