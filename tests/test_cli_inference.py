"""`mhdeblur evaluate`, `select-head` and `deblur` end to end on tiny data."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import keras_mhdeblur
from helpers import TINY_NAFNET
from keras_mhdeblur.cli import main
from keras_mhdeblur.data import iter_evaluation_pairs, read_image, write_synthetic_set
from keras_mhdeblur.evaluation import MultiHeadEvaluation, to_uint8
from keras_mhdeblur.inference import restore
from keras_mhdeblur.saving import load_model, save_model

TINY = TINY_NAFNET


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    keras.utils.set_random_seed(0)
    model = keras_mhdeblur.NAFNetMH(heads=2, **TINY)
    model.compile()
    model.optimizer.build(model.trainable_variables)  # as after training: state to keep
    save_model(model, root / "model.keras")
    pairs = write_synthetic_set(root / "data", 3, size=(32, 48), seed=5, workers=1)
    photos = root / "photos"
    photos.mkdir()
    for index, pair in enumerate(pairs):
        Image.open(pair.blurry).save(photos / f"photo{index}.{'jpg' if index else 'png'}")
    return root, model, pairs


def _official(model, pairs, ssim=True):
    """The summary computed directly with the official metric code."""
    evaluation = MultiHeadEvaluation(compute_ssim=ssim)
    for name, blurry, sharp in iter_evaluation_pairs(pairs):
        evaluation.add(restore(model, blurry, which="all"), sharp, name)
    return evaluation.summary()


def test_evaluate_matches_the_official_code(files, tmp_path, capsys):
    root, model, pairs = files
    report = tmp_path / "report.json"
    assert main(["evaluate", str(root / "model.keras"), "--data", str(root / "data"),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "best overall (oracle)" in out and "best single head" in out
    result = json.loads(report.read_text())
    expected = _official(model, pairs)
    for key in ("per_output_psnr", "per_output_ssim", "best_overall_psnr", "best_overall_ssim",
                "worst_psnr", "best_single_head_psnr"):
        np.testing.assert_allclose(result[key], expected[key], rtol=1e-6)
    assert result["best_single_head"] == expected["best_single_head"]
    assert result["num_images"] == 3 and len(result["per_image_psnr"]) == 3

    assert main(["evaluate", str(root / "model.keras"), "--data", str(root / "data"),
                 "--json", str(report), "--no-ssim", "--limit", "2", "--tile", "32",
                 "--overlap", "16", "--tlc", "32x32"]) == 0
    result = json.loads(report.read_text())
    assert result["num_images"] == 2 and "per_output_ssim" not in result
    assert result["tlc"] == [32, 32] and result["tile"] == 32

    assert main(["evaluate", str(root / "model.keras"), "--data", str(root / "data"),
                 "--json", str(report), "--no-ssim", "--self-ensemble", "2"]) == 0
    result = json.loads(report.read_text())
    evaluation = MultiHeadEvaluation(compute_ssim=False)
    for name, blurry, sharp in iter_evaluation_pairs(pairs):
        evaluation.add(restore(model, blurry, which="all", self_ensemble=2), sharp, name)
    np.testing.assert_allclose(result["per_output_psnr"],
                               evaluation.summary()["per_output_psnr"], rtol=1e-6)
    assert result["self_ensemble"] == 2


def test_select_head_stores_the_best_mean_psnr_output(files, tmp_path, capsys):
    root, model, pairs = files
    chosen = tmp_path / "chosen.keras"
    assert main(["select-head", str(root / "model.keras"), "--data", str(root / "data"),
                 "--out", str(chosen)]) == 0
    out = capsys.readouterr().out
    loaded = load_model(chosen)
    assert f"selected output {loaded.selected_output}" in out
    assert loaded.optimizer is not None  # the optimiser survived the rewrite
    assert loaded.selected_output == _official(model, pairs, ssim=False)["best_single_head"]
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_deblur_writes_selected_all_heads_and_sheets(files, tmp_path, capsys):
    root, model, _ = files
    chosen = tmp_path / "chosen.keras"
    model.selected_output = 1
    save_model(model, chosen)
    model.selected_output = None
    out = tmp_path / "out"
    assert main(["deblur", str(chosen), str(root / "photos"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo0.png", "photo1.png", "photo2.png"]
    photo = read_image(root / "photos" / "photo0.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo0.png")),
                                  to_uint8(restore(model, photo, which=1)))
    capsys.readouterr()

    # Existing outputs are refused before any work, naming them.
    assert main(["deblur", str(chosen), str(root / "photos" / "photo0.png"), "--out",
                 str(out)]) == 1
    assert f"{out / 'photo0.png'}: already exists; pass --overwrite" in capsys.readouterr().err

    every = tmp_path / "every"
    assert main(["deblur", str(chosen), str(root / "photos" / "photo*.jpg"), "--out",
                 str(every), "--all-heads", "--sheet", "--tile", "32", "--overlap", "16"]) == 0
    names = sorted(p.name for p in every.iterdir())
    assert names == sorted([f"photo{i}_out{k}.png" for i in (1, 2) for k in range(3)]
                           + ["photo1_sheet.png", "photo2_sheet.png"])
    sheet = np.asarray(Image.open(every / "photo1_sheet.png"))
    assert sheet.shape == (2 * 32 + 4, 3 * 48 + 8, 3)  # input, 3 outputs, spread: 2 rows of 3
    assert main(["deblur", str(chosen), str(root / "photos" / "photo1.jpg"), "--out",
                 str(every), "--all-heads", "--overwrite"]) == 0


def test_deblur_pads_a_photo_by_reflection_unless_asked(files, tmp_path):
    root, model, pairs = files
    photo = tmp_path / "odd.png"
    Image.open(pairs[0].blurry).crop((0, 0, 44, 26)).save(photo)  # sides not multiples of 16
    image = read_image(photo)
    out = tmp_path / "out"
    assert main(["deblur", str(root / "model.keras"), str(photo), "--out", str(out)]) == 0
    reflecting = load_model(root / "model.keras", compile=False).set_pad_mode("reflect")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "odd.png")),
                                  to_uint8(restore(reflecting, image, which=0)))
    assert main(["deblur", str(root / "model.keras"), str(photo), "--out", str(out),
                 "--pad-mode", "model", "--overwrite"]) == 0
    zeros = np.asarray(Image.open(out / "odd.png"))
    np.testing.assert_array_equal(zeros, to_uint8(restore(model, image, which=0)))
    assert model.pad_mode == "constant" and np.abs(
        zeros.astype(int) - to_uint8(restore(reflecting, image, which=0))).max() > 0


def test_deblur_writes_a_grey_photo_grey_unless_asked(files, tmp_path):
    root, model, pairs = files
    photo = tmp_path / "grey.png"
    Image.open(pairs[0].blurry).convert("L").save(photo)  # a black-and-white photo
    out = tmp_path / "out"
    assert main(["deblur", str(root / "model.keras"), str(photo), "--out", str(out)]) == 0
    written = np.asarray(Image.open(out / "grey.png")).astype(int)
    assert np.ptp(written, axis=-1).max() == 0  # grey
    tinted = restore(model, read_image(photo), which=0, keep_grey=False)
    assert np.ptp(to_uint8(tinted).astype(int), axis=-1).max() > 1  # what the network makes
    np.testing.assert_allclose(written[..., 0], to_uint8(tinted.mean(axis=-1)), atol=1)
    assert main(["deblur", str(root / "model.keras"), str(photo), "--out", str(out),
                 "--grey-as-colour", "--overwrite"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out / "grey.png")), to_uint8(tinted))


def test_bad_inputs_fail_with_the_file_named(files, tmp_path, capsys):
    root, _, _ = files
    model = str(root / "model.keras")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert main(["deblur", model, str(root / "photos" / "photo0.png"), str(broken),
                 "--out", str(out)]) == 1
    assert f"{broken}: " in capsys.readouterr().err
    assert not out.exists()  # nothing was written

    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("hello")
    for command in (["deblur", str(not_a_model), str(broken), "--out", str(out)],
                    ["evaluate", str(not_a_model), "--data", str(root / "data")],
                    ["select-head", str(not_a_model), "--data", str(root / "data")]):
        if command[0] == "deblur":
            command[2] = str(root / "photos" / "photo0.png")
        assert main(command) == 1
        assert f"{not_a_model}: not a model file" in capsys.readouterr().err

    assert main(["deblur", model, str(tmp_path / "missing*.png"), "--out", str(out)]) == 1
    assert "missing*.png: no such file or folder" in capsys.readouterr().err
    assert main(["evaluate", model, "--data", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert main(["deblur", model, str(root / "photos"), "--out", str(out), "--tile", "32",
                 "--overlap", "32"]) == 1
    assert "--overlap must be in [0, --tile)" in capsys.readouterr().err
    assert main(["deblur", model, str(root / "photos"), "--out", str(out),
                 "--self-ensemble", "3"]) == 1
    assert "--self-ensemble must be one of 1, 2, 4, 8; got 3" in capsys.readouterr().err
    assert main(["deblur", model, str(root / "photos"), "--out", str(out), "--output", "5"]) == 1
    assert "--output 5: output index 5 is out of range: the model has 3 outputs" \
        in capsys.readouterr().err


def test_add_scorer_then_auto_in_deblur_and_evaluate(files, tmp_path, capsys):
    root, model, pairs = files
    scored_path = tmp_path / "scored.keras"
    assert main(["add-scorer", str(root / "model.keras"), str(scored_path), "--synthetic",
                 "--crop", "32", "--batch", "2", "--steps", "3"]) == 0
    scored = load_model(scored_path, compile=False)
    assert scored.output_scorer is not None
    photo = read_image(root / "photos" / "photo0.png")
    np.testing.assert_allclose(restore(scored, photo, which="all"),
                               restore(model, photo, which="all"), atol=1e-6)  # frozen
    out = tmp_path / "auto"
    assert main(["deblur", str(scored_path), str(root / "photos" / "photo0.png"), "--out",
                 str(out), "--sheet"]) == 0  # auto is the default with a branch
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo0.png")),
                                  to_uint8(restore(scored, photo, which="auto")))
    capsys.readouterr()
    assert main(["evaluate", str(scored_path), "--data", str(root / "data"), "--no-ssim"]) == 0
    assert "auto (scoring branch)" in capsys.readouterr().out
    # refusals: an existing OUT, no data source, a crop off the patch grid
    assert main(["add-scorer", str(root / "model.keras"), str(scored_path), "--synthetic"]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["add-scorer", str(root / "model.keras"), str(tmp_path / "x.keras")]) == 1
    assert "--data DIR, --synthetic or --from-run RUN_DIR" in capsys.readouterr().err
    # --from-run: the pairs of the run that trained the model (its blur recipe), another seed.
    from keras_mhdeblur.commands.add_scorer import run_pairs
    from keras_mhdeblur.training import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    recipe = TrainConfig(synthetic=True, source="builtin:train", crop=64, seed=42,
                         synthetic_blur={"blur_pixels": [1, 8], "blur_length_scale": "log"},
                         source_options={"dead_leaves_count": 2, "dead_leaves_size": 96})
    (run / "config.json").write_text(json.dumps(recipe.to_dict()))
    pairs_config = run_pairs(run)
    assert (pairs_config.synthetic_blur, pairs_config.source_options, pairs_config.source) == (
        recipe.synthetic_blur, recipe.source_options, "builtin:train")
    assert main(["add-scorer", str(root / "model.keras"), str(tmp_path / "from_run.keras"),
                 "--from-run", str(run), "--crop", "32", "--batch", "2", "--steps", "2",
                 "--inputs", "features"]) == 0
    assert load_model(tmp_path / "from_run.keras",
                      compile=False).output_scorer.inputs == "features"
    capsys.readouterr()
    assert main(["add-scorer", str(root / "model.keras"), str(tmp_path / "y.keras"),
                 "--from-run", str(run), "--source", "somewhere"]) == 1
    assert "drop --source" in capsys.readouterr().err
    assert main(["add-scorer", str(root / "model.keras"), str(tmp_path / "y.keras"),
                 "--from-run", str(tmp_path)]) == 1
    assert "not a training run folder" in capsys.readouterr().err
    assert main(["add-scorer", str(root / "model.keras"), str(tmp_path / "x.keras"),
                 "--synthetic", "--crop", "36"]) == 1
    assert "multiple of --patch-size" in capsys.readouterr().err
    assert main(["deblur", str(root / "model.keras"), str(root / "photos" / "photo0.png"),
                 "--out", str(tmp_path / "fallback"), "--output", "auto"]) == 0
    assert "no scoring branch" in capsys.readouterr().err
