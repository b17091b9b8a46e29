"""Our multi-head models against the official PyTorch code on this machine, side by side.

    python benchmarks/versus_official.py --official ../shared/bench/official-torch
    python benchmarks/versus_official.py --official DIR --models nafnet-w32 --rounds 1 --no-inference
    python benchmarks/versus_official.py --models hinet,restormer,mprnet \
        --official-multihead CHECKOUT --no-inference

--official DIR holds the official PyTorch step of NAFNet (`bench_torch.py`, `ref/basicsr/...`).
--official-multihead CHECKOUT is a checkout of the paper's code (github.com/Liu-SD/
multi-output-deblur): its MHHINet, MHRestormer and MHMPRNet are built from there and trained by
this script's own PyTorch step with the official losses and optimisers (HINet: per-stage PSNR,
Adam 2e-4 betas 0.9/0.99, clip 0.01; Restormer: L1, AdamW 3e-4 wd 1e-4, clip 0.01; MPRNet:
Charbonnier + 0.05 edge per stage, Adam 2e-4, no clip; winner-takes-all over heads). Both are
read, never copied into this project, and need `torch` (and `einops` for Restormer). Both sides train NAFNetMH K=4 with head
combination, fp32, the same batch and crop (default: batch 1, 128x128, the CPU figures of
docs/speed.md): forward, multi-head PSNR loss, backward, global-norm clip 0.01, AdamW. Ours is
`benchmarks/train_step.py` on the current Keras backend; theirs is the official step in eager
mode. Runs alternate (ours, theirs, ours, ...), each in its own process, so that a noisy machine
hits both alike and every peak RSS is one process's own (read from the kernel at exit). The
memory rows split the peak: the RSS a process has after only importing its framework, the rest
above it, and for ours the tensors at their peak (TensorFlow's CPU allocator), so that what a
framework costs is told apart from what the step itself holds.

With inference (the default), the same models deblur one image: the first call of a fresh
process (what a user waits for: ours includes tracing where it happens, theirs nothing to
trace), then the best of three warm calls, at 256x256 and 1280x720.

Prints one row per measurement with both sides and the ratio ours/theirs (higher is better
for img/s, lower for seconds and memory).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OFFICIAL = ROOT.parent / "shared" / "bench" / "official-torch"
OFFICIAL_CONFIG = {"nafnet-w32": "a", "nafnet-w64": "b"}  # bench_torch.py's names
MODELS = ("nafnet-w32", "nafnet-w64", "hinet", "restormer", "mprnet")


def _parse():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, default=DEFAULT_OFFICIAL,
                        help="folder with the official bench_torch.py and ref/ (default: %(default)s)")
    parser.add_argument("--official-multihead", type=Path,
                        help="checkout of Liu-SD/multi-output-deblur (for hinet, restormer, mprnet)")
    parser.add_argument("--models", default="nafnet-w32,nafnet-w64",
                        help="comma separated: nafnet-w32, nafnet-w64, hinet, restormer, mprnet")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads for both sides (default: all cores)")
    parser.add_argument("--no-inference", action="store_true", help="training rows only")
    parser.add_argument("--json", help="append every measurement as a JSON line to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # inference worker: "ours" or "theirs"
    parser.add_argument("--model", help=argparse.SUPPRESS)
    return parser.parse_args()


def _run(command, env):
    """Runs a child; returns (stdout, peak RSS in GiB of that child alone)."""
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env,
                                 cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read()
    if child.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed (exit {child.returncode}):\n"
                         f"{text[-3000:]}")
    return text, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def _environment(args):
    threads = str(args.threads)
    return {**os.environ, "OMP_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def train_ours(model, args):
    text, rss = _run([sys.executable, "benchmarks/train_step.py", "--config", model,
                      "--batch", str(args.batch), "--crop", str(args.crop), "--steps",
                      str(args.steps), "--jit", "auto"], _environment(args))
    row = json.loads([line for line in text.splitlines() if line.startswith("ROW ")][-1][4:])
    return {"img_s": row["images_per_s"], "first_step_s": row["first_step_s"], "peak_gib": rss,
            "import_gib": row["import_rss_gib"], "above_import_gib": rss - row["import_rss_gib"],
            "tensor_peak_gib": row["tensor_peak_gib"],
            "version": f"{row['backend']}, {row['versions']}"}


def _torch_import_gib(args):
    """Peak RSS of a process that only imports torch: what the official step's process holds
    before any model."""
    return _run([sys.executable, "-c", "import torch"], _environment(args))[1]


def _with_import(row, import_gib):
    return {**row, "import_gib": import_gib, "above_import_gib": row["peak_gib"] - import_gib}


def train_theirs(model, args):
    if model not in OFFICIAL_CONFIG:  # the other backbones: this script's own PyTorch step
        text, rss = _run([sys.executable, __file__, "--child", "torch-train", "--model", model,
                          *_child_arguments(args)], _environment(args))
        row = json.loads([line for line in text.splitlines() if line.startswith("TRAIN ")][-1][6:])
        return _with_import({**row, "peak_gib": rss}, _torch_import_gib(args))
    env = {**_environment(args), "BENCH_BATCH": str(args.batch), "BENCH_CROP": str(args.crop),
           "BENCH_STEPS": str(args.steps), "BENCH_WARMUP": "1"}
    text, rss = _run([sys.executable, str(args.official / "bench_torch.py"), "--config",
                      OFFICIAL_CONFIG[model], "--variants", "eager_fp32"], env)
    row = json.loads([line for line in text.splitlines() if line.startswith("RESULT ")][-1][7:])
    if row.get("status") != "ok":
        raise SystemExit(f"official step: {row.get('status')}")
    return _with_import({"img_s": row["img_s"], "first_step_s": row["first_step_s"],
                         "peak_gib": rss, "version": f"torch {row['framework_version']}"},
                        _torch_import_gib(args))


SIZES = {"256x256": (256, 256), "1280x720": (720, 1280)}


def _child_arguments(args):
    arguments = ["--official", str(args.official), "--threads", str(args.threads), "--batch",
                 str(args.batch), "--crop", str(args.crop), "--steps", str(args.steps)]
    if args.official_multihead is not None:
        arguments += ["--official-multihead", str(args.official_multihead)]
    return arguments


def infer(side, model, args):
    text, rss = _run([sys.executable, __file__, "--child", side, "--model", model,
                      *_child_arguments(args)], _environment(args))
    result = json.loads([line for line in text.splitlines() if line.startswith("INFER ")][-1][6:])
    result["peak_gib"] = rss
    return result


def _inference_child(args):
    """One process: the first call at 256x256, then the best of three warm calls per size."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = {name: rng.random((h, w, 3), dtype=np.float32) for name, (h, w) in SIZES.items()}
    if args.child == "ours":
        import keras

        import keras_mhdeblur
        from keras_mhdeblur.inference import Predictor, predictor

        keras.utils.set_random_seed(0)
        model = keras_mhdeblur.build_model(args.model, heads=4)
        start = time.perf_counter()
        predictor(model)(images["256x256"][None])  # what restore() does on a first call
        first = time.perf_counter() - start
        warm = Predictor(model, eager_seconds=0)  # the compiled path, for the steady figure
        run = lambda image: warm(image[None])  # noqa: E731
        version = f"{keras.backend.backend()}, keras {keras.__version__}"
    else:
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        model = official_model(args.model, args).eval()

        def run(image):
            with torch.no_grad():
                outputs = model(torch.from_numpy(image).permute(2, 0, 1)[None])
                return (outputs[-1] if isinstance(outputs, (list, tuple)) else outputs).numpy()

        start = time.perf_counter()
        run(images["256x256"])
        first = time.perf_counter() - start
        version = f"torch {torch.__version__}"
    result = {"first_call_s": first, "version": version}
    for name, image in images.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run(image)
            times.append(time.perf_counter() - start)
        result[f"forward_{name}_s"] = min(times)
    print("INFER " + json.dumps(result), flush=True)


def _load(path, name, modules=None):
    """The module at `path` (a file of the official code), imported under `name`."""
    import importlib.util

    if not path.is_file():
        raise SystemExit(f"{path}: not found; --official-multihead must be a checkout of "
                         "github.com/Liu-SD/multi-output-deblur")
    sys.modules.update(modules or {})
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_model(model, args):
    """The official multi-head network with its GoPro defaults, K=4 with head combination."""
    if model in OFFICIAL_CONFIG:
        sys.path.insert(0, str(args.official / "ref"))
        from basicsr.models.archs.MHNAFNet_arch import MHNAFNet

        return MHNAFNet(img_channel=3, width=int(model.rsplit("w", 1)[1]), middle_blk_num=1,
                        enc_blk_nums=[1, 1, 1, 28], dec_blk_nums=[1, 1, 1, 1], n_heads=4,
                        combinate_heads=True)
    if args.official_multihead is None:
        raise SystemExit(f"--models {model} needs --official-multihead CHECKOUT")
    root = args.official_multihead
    if model == "hinet":
        archs = root / "NAFNet-main" / "basicsr" / "models" / "archs"
        # mhhinet_arch imports basicsr.models.archs.local_arch; load that file alone, without
        # basicsr's package imports (datasets, cv2, ...).
        local = _load(archs / "local_arch.py", "basicsr.models.archs.local_arch")
        hinet = _load(archs / "mhhinet_arch.py", "mhhinet_arch",
                      {"basicsr.models.archs.local_arch": local})
        return hinet.MHHINet(n_heads=4, combinate_heads=True)
    if model == "restormer":
        path = root / "Restormer-main" / "basicsr_restormer" / "models" / "archs"
        return _load(path / "mhrestormer_arch.py", "mhrestormer_arch").MHRestormer(
            n_heads=4, combinate_heads=True)
    path = root / "MPRNet-main" / "Deblurring" / "MHMPRNet.py"
    return _load(path, "MHMPRNet").MPRNet(n_heads=4, combinate_heads=True)


def _torch_train_child(args):
    """The official recipe's step for HINet, Restormer or MPRNet, timed like bench_torch.py."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = official_model(args.model, args).train()
    parameters = list(model.parameters())
    rng = np.random.default_rng(0)
    shape = (args.batch, 3, args.crop, args.crop)
    target = torch.from_numpy(rng.random(shape, dtype=np.float32))
    blurry = torch.clamp(target + 0.05 * torch.from_numpy(
        rng.standard_normal(shape, dtype=np.float32)), 0, 1)

    def per_head(outputs, base):  # (B, K', C, H, W) -> winner-takes-all mean over the batch
        return base(outputs, target[:, None]).min(dim=1)[0].mean()

    def psnr(outputs, wanted):
        return 10 / np.log(10) * torch.log(((outputs - wanted) ** 2).mean(dim=(2, 3, 4)) + 1e-8)

    def l1(outputs, wanted):
        return (outputs - wanted).abs().mean(dim=(2, 3, 4))

    gauss = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
    gauss = (gauss[:, None] * gauss[None, :]).expand(3, 1, 5, 5).contiguous()

    def laplacian(images):  # the image minus its blurred 2x down- and upsampled copy
        flat = images.reshape(-1, 3, *images.shape[-2:])
        blurred = F.conv2d(F.pad(flat, (2, 2, 2, 2), mode="replicate"), gauss, groups=3)
        upsampled = torch.zeros_like(blurred)
        upsampled[:, :, ::2, ::2] = 4 * blurred[:, :, ::2, ::2]
        smooth = F.conv2d(F.pad(upsampled, (2, 2, 2, 2), mode="replicate"), gauss, groups=3)
        return (flat - smooth).reshape(images.shape)

    def charbonnier_and_edge(outputs, wanted):
        charbonnier = lambda d: torch.sqrt(d * d + 1e-6).mean(dim=(2, 3, 4))  # noqa: E731
        wanted = wanted.expand_as(outputs)
        return (charbonnier(outputs - wanted)
                + 0.05 * charbonnier(laplacian(outputs) - laplacian(wanted)))

    if args.model == "hinet":
        optimizer = torch.optim.Adam(parameters, lr=2e-4, betas=(0.9, 0.99))
        loss_of = lambda outputs: sum(per_head(o, psnr) for o in outputs)  # noqa: E731
        clip = 0.01
    elif args.model == "restormer":
        optimizer = torch.optim.AdamW(parameters, lr=3e-4, betas=(0.9, 0.999), weight_decay=1e-4)
        loss_of = lambda outputs: per_head(outputs, l1)  # noqa: E731
        clip = 0.01
    else:
        optimizer = torch.optim.Adam(parameters, lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
        loss_of = lambda outputs: sum(per_head(o, charbonnier_and_edge)  # noqa: E731
                                      for o in outputs)
        clip = None

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(blurry))
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        return loss

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    step()  # warm-up, as bench_torch.py's
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    elapsed = time.perf_counter() - start
    print("TRAIN " + json.dumps({"img_s": args.batch * args.steps / elapsed, "first_step_s": first,
                                 "loss": float(loss), "version": f"torch {torch.__version__}"}),
          flush=True)


def _report(rows, labels):
    print(f"\n{'what':<34} {'ours':>14} {'official':>14} {'ours/official':>14}")
    for key, label, unit in labels:
        ours = [row[key] for row in rows["ours"]]
        theirs = [row[key] for row in rows["theirs"]]
        a, b = statistics.median(ours), statistics.median(theirs)
        spread = lambda values: (f" ({min(values):.2f}-{max(values):.2f})"  # noqa: E731
                                 if len(values) > 1 else "")
        print(f"{label:<34} {a:>9.2f} {unit:<4} {b:>9.2f} {unit:<4} {a / b:>13.2f}x")
        if len(ours) > 1 or len(theirs) > 1:
            print(f"{'':<34} {spread(ours):>14} {spread(theirs):>14}")


def main():
    args = _parse()
    if args.child == "torch-train":
        return _torch_train_child(args)
    if args.child:
        return _inference_child(args)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: expected some of {', '.join(MODELS)}, got {unknown}")
    if set(models) & set(OFFICIAL_CONFIG) and not (args.official / "bench_torch.py").is_file():
        raise SystemExit(f"--official {args.official}: no bench_torch.py there; pass the folder "
                         "of the official PyTorch step (../shared/bench/official-torch)")
    if set(models) - set(OFFICIAL_CONFIG) and args.official_multihead is None:
        raise SystemExit("--models hinet/restormer/mprnet need --official-multihead CHECKOUT "
                         "(a checkout of github.com/Liu-SD/multi-output-deblur)")
    for model in models:
        train = {"ours": [], "theirs": []}
        inference = {"ours": [], "theirs": []}
        for round_index in range(args.rounds):
            for side, measure in (("ours", train_ours), ("theirs", train_theirs)):
                row = measure(model, args)
                train[side].append(row)
                print(f"{model} round {round_index + 1} train {side}: {json.dumps(row)}",
                      flush=True)
            if not args.no_inference:
                for side in ("ours", "theirs"):
                    row = infer(side, model, args)
                    inference[side].append(row)
                    print(f"{model} round {round_index + 1} inference {side}: "
                          f"{json.dumps(row)}", flush=True)
        if args.json:
            with open(args.json, "a") as handle:
                for kind, rows in (("train", train), ("inference", inference)):
                    for side, side_rows in rows.items():
                        for row in side_rows:
                            handle.write(json.dumps({"model": model, "kind": kind, "side": side,
                                                     "batch": args.batch, "crop": args.crop,
                                                     **row}) + "\n")
        print(f"\n{model} K=4 combined, fp32, {args.threads} threads; train batch "
              f"{args.batch}, {args.crop}x{args.crop}; medians of {args.rounds} alternating runs "
              f"(range below); ours {train['ours'][0]['version']}, "
              f"official {train['theirs'][0]['version']}")
        _report(train, [("img_s", "train step", "img/s"),
                        ("first_step_s", "first train step", "s"),
                        ("peak_gib", "peak RSS, train", "GiB"),
                        ("import_gib", "RSS of the framework's import", "GiB"),
                        ("above_import_gib", "peak RSS above the import, train", "GiB")])
        tensors = statistics.median(row["tensor_peak_gib"] for row in train["ours"])
        print(f"{'ours: tensors at their peak, train':<34} {tensors:>9.2f} GiB  (TensorFlow's CPU "
              "allocator; the rest above the import is the runtime's own)")
        if not args.no_inference:
            _report(inference, [("first_call_s", "first call 256x256 (fresh process)", "s"),
                                ("forward_256x256_s", "forward 256x256 (warm)", "s"),
                                ("forward_1280x720_s", "forward 1280x720 (warm)", "s"),
                                ("peak_gib", "peak RSS, inference", "GiB")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
