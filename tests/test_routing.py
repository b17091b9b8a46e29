"""The preset router: patches, learning which preset wins, saving, the shipped router's choices,
and `mhdeblur deblur` choosing a preset per photo."""

import json

import keras
import numpy as np
import pytest

from helpers import random_images
from keras_mhdeblur.cli import main
from keras_mhdeblur.data.io import read_image, write_png
from keras_mhdeblur.data.sources import bundled_blurry_photo_paths
from keras_mhdeblur.inference import restore
from keras_mhdeblur.presets import DEFAULT_PRESET, PresetError, from_preset
from keras_mhdeblur.presets import routing
from keras_mhdeblur.presets.routing import (PATCH, Router, best_threshold, build_router,
                                            choose_preset, fit_router, patch_detail,
                                            photo_patches, routed_figures, shipped_router)

LONG_PRESET = "nafnet-w16-mh4-long"


def smeared(images, length):
    """`images` (N, H, W, 3) averaged over `length` horizontal shifts: a straight smear."""
    return np.mean([np.roll(images, shift, axis=2) for shift in range(length)], axis=0)


def test_photo_patches_cover_the_photo_and_detail_is_where_edges_are():
    image = random_images((300, 400, 3), seed=1)
    patches = photo_patches(image)
    assert patches.shape == (3 * 4, PATCH, PATCH, 3)  # a grid, overlapping where 300 % 128 != 0
    np.testing.assert_array_equal(patches[0], image[:PATCH, :PATCH])
    np.testing.assert_array_equal(patches[-1], image[-PATCH:, -PATCH:])
    small = photo_patches(image[:40, :60])  # smaller than a patch: mirrored up to one
    assert small.shape == (1, PATCH, PATCH, 3)
    np.testing.assert_array_equal(small[0, :40, :60], image[:40, :60])
    assert len(photo_patches(np.zeros((2000, 3000, 3)), limit=10)) == 10
    with pytest.raises(ValueError, match=r"\(H, W, 3\).*\(5, 5\)"):
        photo_patches(np.zeros((5, 5)))
    flat = np.full((1, PATCH, PATCH, 3), 0.5)
    detail = patch_detail(np.concatenate([flat, patches[:1], smeared(patches[:1], 9)]))
    assert detail[0] == 0 and detail[1] > detail[2] > 0


def test_fit_router_learns_smear_lengths_and_the_threshold_routes_each_pair():
    # Random patches smeared along 1 px (sharp) or 8 px: the router learns which is which.
    sharp = random_images((48, 32, 32, 3), seed=2)
    blurry = np.concatenate([sharp[:24], smeared(sharp[24:], 8)]).astype(np.float32)
    lengths = np.repeat([1.0, 8.0], 24)
    keras.utils.set_random_seed(0)
    router = Router(build_router(width=4), ["first", "second"], threshold=2.8)
    before = router.patch_smears(blurry)
    fit_router(router.network, blurry, lengths, epochs=40, batch_size=16, learning_rate=3e-3)
    smears = router.patch_smears(blurry)
    assert not np.allclose(smears, before)
    assert np.all((smears >= 1) & (smears <= 64))  # within the lengths it learns
    assert np.mean((smears >= 2.8) == (lengths == 8)) >= 0.9
    # Routing by that estimate: the second preset wins on the smeared pairs here.
    psnr = np.zeros((48, 2))
    psnr[:24] = 30.0, 28.0
    psnr[24:] = 27.0, 30.0
    figures = routed_figures(smears, psnr, router.threshold)
    assert figures["first_psnr"] == pytest.approx((24 * 30 + 24 * 27) / 48)
    assert figures["second_psnr"] == pytest.approx((24 * 28 + 24 * 30) / 48)
    assert figures["best_of_two_psnr"] == 30.0
    assert figures["routed_psnr"] > max(figures["first_psnr"], figures["second_psnr"])
    assert figures["second_share"] == pytest.approx(np.mean(smears >= 2.8))
    # The best threshold separates the two groups: every pair routed to its winner.
    threshold = best_threshold([1.0] * 24 + [8.0] * 24, psnr)
    assert 1.0 < threshold <= 8.0
    assert routed_figures([1.0] * 24 + [8.0] * 24, psnr, threshold)["routed_psnr"] == 30.0
    assert best_threshold([1.0, 8.0], np.array([[30.0, 20.0], [30.0, 20.0]])) == np.inf
    # A photo of smeared patches goes to the second preset, one of sharp patches to the first.
    assert router.choose(smeared(random_images((1, 128, 256, 3), seed=3), 8)[0]).preset == "second"
    assert router.choose(random_images((128, 256, 3), seed=3)).preset == "first"


def test_the_drawn_symmetries_are_quarter_turns_then_a_mirror():
    from keras_mhdeblur.data.augment import dihedral_transform

    patch = random_images((6, 6, 3), seed=7)
    for draw, state in enumerate(routing.DRAWN_SYMMETRIES):
        turned = np.rot90(patch, draw % 4)
        np.testing.assert_array_equal(dihedral_transform(patch, state),
                                      turned[:, ::-1] if draw >= 4 else turned)


def test_a_router_folder_round_trips_and_damage_names_the_file(tmp_path):
    import h5py

    router = Router(build_router(width=4), ["a", "b"], threshold=6.5, metadata={"note": "x"})
    fit_router(router.network, random_images((4, 32, 32, 3), seed=4), np.ones(4), epochs=1)
    folder = router.save(tmp_path / "router")
    with h5py.File(folder / routing.ROUTER_WEIGHTS) as weights:
        assert "optimizer" not in weights  # weights only, as a preset's
    loaded = Router.load(folder)
    assert (loaded.presets, loaded.threshold, loaded.metadata["note"]) == (["a", "b"], 6.5, "x")
    patches = photo_patches(random_images((130, 140, 3), seed=4))
    np.testing.assert_allclose(loaded.patch_smears(patches), router.patch_smears(patches),
                               rtol=1e-5)
    with pytest.raises(PresetError, match="already exists"):
        router.save(folder)
    (folder / routing.ROUTER_CONFIG).write_text("{not json")
    with pytest.raises(PresetError, match=r"router\.json: damaged"):
        Router.load(folder)
    router.save(folder, overwrite=True)
    (folder / routing.ROUTER_WEIGHTS).write_bytes(b"not hdf5")
    with pytest.raises(PresetError, match=r"router\.weights\.h5: damaged"):
        Router.load(folder)
    with pytest.raises(PresetError, match=r"router\.json: missing"):
        Router.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="two presets"):
        Router(build_router(width=4), ["a"])


def test_the_shipped_router_sends_long_smears_to_the_long_preset_and_mild_blur_to_the_default():
    router = shipped_router()
    assert router is not None and router.presets == [DEFAULT_PRESET, LONG_PRESET]
    # Its threshold was chosen on these presets' outputs: a preset that changes needs a new
    # router (tools/train_router.py).
    assert router.metadata["trained"]["preset_weights"] == [
        routing.preset_fingerprint(name) for name in router.presets]
    # What it was measured to do, stored with it: on pairs of photos neither it nor the presets
    # saw, the routed choice beats each preset alone.
    held_out = router.metadata["measured"]["held_out_pairs"]
    assert held_out["routed_psnr"] > max(held_out["first_psnr"], held_out["second_psnr"])
    assert held_out["best_of_two_psnr"] >= held_out["routed_psnr"]
    assert 0.1 < held_out["second_share"] < 0.9
    # The clock photo's straight smear of 45-50 px goes to the long preset.
    [clock] = bundled_blurry_photo_paths()
    choice = choose_preset(read_image(clock))
    assert choice.preset == LONG_PRESET and choice.smear_pixels > router.threshold
    # Pairs of the held-out photos: 1-2 px of shake reads short, 32-64 px of steady motion long
    # (the router's blur, `routing.ROUTER_BLUR`, at one length).
    from keras_mhdeblur.data import SyntheticPairs

    blur = {**routing.ROUTER_BLUR, "blur_pixels": (1, 2), "steady_share": 0.0}
    mild, _ = SyntheticPairs(PATCH, seed=5, source="builtin:heldout", **blur).arrays(8)
    blur.update(blur_pixels=(32, 64), steady_share=1.0)
    long, _ = SyntheticPairs(PATCH, seed=5, source="builtin:heldout", **blur).arrays(8)
    assert np.mean(router.patch_smears(mild) < router.threshold) >= 0.75
    assert np.mean(router.patch_smears(long) >= router.threshold) >= 0.75
    assert np.median(router.patch_smears(long)) > 4 * np.median(router.patch_smears(mild))


def test_deblur_without_a_model_chooses_a_preset_per_photo(tmp_path, capsys, monkeypatch):
    [clock] = bundled_blurry_photo_paths()
    photos = tmp_path / "photos"
    photos.mkdir()
    write_png(photos / "clock.png", read_image(clock))
    write_png(photos / "sharp.png", random_images((64, 96, 3), seed=6))
    out = tmp_path / "out"
    assert main(["deblur", str(photos), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"clock.png with {LONG_PRESET} (router: smear ~" in printed
    assert f"sharp.png with {DEFAULT_PRESET} (router: smear ~" in printed
    for name, preset in (("clock", LONG_PRESET), ("sharp", DEFAULT_PRESET)):
        expected = restore(from_preset(preset), read_image(photos / f"{name}.png"),
                           which="shipped")
        np.testing.assert_allclose(read_image(out / f"{name}.png"),
                                   np.round(np.clip(expected, 0, 1) * 255) / 255, atol=1 / 255)
    assert main(["presets"]) == 0
    assert f"go to {LONG_PRESET}, the others to {DEFAULT_PRESET}" in capsys.readouterr().out
    # Without a shipped router, no --model means the default preset, and auto says why not.
    monkeypatch.setattr(routing, "ROUTER_DIR", tmp_path / "no-router")
    assert main(["deblur", str(photos / "clock.png"), "--out", str(out), "--overwrite"]) == 0
    expected = restore(from_preset(DEFAULT_PRESET), read_image(photos / "clock.png"),
                       which="shipped")
    np.testing.assert_allclose(read_image(out / "clock.png"),
                               np.round(np.clip(expected, 0, 1) * 255) / 255, atol=1 / 255)
    capsys.readouterr()
    assert main(["deblur", str(photos), "--model", "auto", "--out", str(out),
                 "--overwrite"]) == 1
    assert "--model auto: this installation ships no preset router" in capsys.readouterr().err


def test_train_router_tool_refuses_bad_counts_and_an_existing_router(tmp_path, monkeypatch):
    import runpy
    import sys

    from helpers import REPO_ROOT

    script = str(REPO_ROOT / "tools" / "train_router.py")
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path), "--pairs", "0"])
    with pytest.raises(SystemExit) as error:
        runpy.run_path(script, run_name="__main__")
    assert error.value.code == 2
    (tmp_path / "router").mkdir()
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path)])
    with pytest.raises(SystemExit) as error:
        runpy.run_path(script, run_name="__main__")
    assert error.value.code == 2
    assert json.loads(json.dumps(routing.ROUTER_BLUR))  # the recipe it stores is plain JSON


def test_smear_pairs_know_each_path_and_the_tool_measures_exact_reading_ceilings():
    """`smear_pairs` gives each camera path's length and straightness (steady paths are
    straight, shake wanders); the tool's ceilings route by the true path: where the presets'
    winner depends on the straightness at one length, only the rule that reads it gets every
    pair right."""
    import runpy

    from helpers import REPO_ROOT

    assert routing.path_straightness(np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])) == 1.0
    assert routing.path_straightness(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])) == 0.0
    assert routing.path_straightness(np.zeros((5, 2))) == 1.0  # no motion
    blur = {**routing.ROUTER_BLUR, "blur_pixels": (16, 16)}
    steady = routing.smear_pairs(4, 1, blur={**blur, "steady_share": 1.0}, size=64)
    shake = routing.smear_pairs(4, 1, blur={**blur, "steady_share": 0.0}, size=64)
    assert steady.blurry.shape == (4, 64, 64, 3) and steady.psnr is None
    np.testing.assert_allclose(steady.lengths, 16, rtol=0.05)
    assert steady.straightness.min() > 0.95 and shake.straightness.mean() < 0.9

    ceilings = runpy.run_path(str(REPO_ROOT / "tools" / "train_router.py"))[
        "exact_reading_ceilings"]
    # 1 px: the first preset wins; 8 px: the second under steady motion, the first under shake.
    lengths = np.repeat([1.0, 8.0, 8.0], 20)
    straightness = np.repeat([1.0, 1.0, 0.3], 20)
    psnr = np.zeros((60, 2))
    psnr[:20], psnr[20:40], psnr[40:] = (30.0, 28.0), (25.0, 27.0), (26.0, 24.0)
    pairs = routing.SmearPairs(None, lengths, straightness, psnr)
    figures = ceilings(pairs, pairs)
    assert figures["routed_by_true_length_and_straightness_psnr"] == pytest.approx(
        psnr.max(axis=1).mean())
    assert figures["routed_by_true_length_psnr"] < psnr.max(axis=1).mean() - 0.5


def test_route_presets_reads_each_preset_the_routed_choice_and_the_best_of_two(tmp_path,
                                                                               monkeypatch):
    """experiments/route_presets.py: one row per octave and per preset's recipe, the routed
    PSNR being one preset's pair by pair and the best of two the larger; bad counts are usage
    errors."""
    import runpy
    import sys

    from helpers import REPO_ROOT

    script = str(REPO_ROOT / "experiments" / "route_presets.py")
    monkeypatch.setattr(sys, "argv", [script, "--pairs", "0"])
    with pytest.raises(SystemExit) as error:
        runpy.run_path(script, run_name="__main__")
    assert error.value.code == 2
    out = tmp_path / "route.json"
    monkeypatch.setattr(sys, "argv", [script, "--pairs", "1", "--per-octave", "1", "--longest",
                                      "2", "--out", str(out)])
    runpy.run_path(script, run_name="__main__")
    result = json.loads(out.read_text())
    assert result["presets"] == [DEFAULT_PRESET, LONG_PRESET]
    rows = result["rows"]
    assert [row["blur"] for row in rows] == ["1-2 px", f"{DEFAULT_PRESET}'s blur",
                                             f"{LONG_PRESET}'s blur"]
    for row in rows:  # one pair each: routed is the chosen preset's, the best of two the larger
        assert row["second_share"] in (0.0, 1.0)
        chosen = row["second_psnr"] if row["second_share"] == 1.0 else row["first_psnr"]
        assert row["routed_psnr"] == chosen
        assert row["best_of_two_psnr"] == max(row["first_psnr"], row["second_psnr"])
