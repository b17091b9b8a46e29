"""Build our models from the official class names and constructor arguments.

`from_official_config("MHNAFNetLocal", width=32, enc_blk_nums=[1, 1, 1, 28], ...)` takes the
arguments exactly as the official code (and the `network_g` section of its YAML options) spells
them, so an official checkpoint's architecture is one call away.
"""

from pathlib import Path

from keras_mhdeblur.models import (HINet, HINetMH, MPRNet, MPRNetMH, NAFNet, NAFNetMH, Restormer,
                                   RestormerMH)
from keras_mhdeblur.models.restormer import official_block_counts

OFFICIAL_BUILDERS = {}


def register_official_class(*names):
    """Decorator: `builder(official_class, **official_kwargs) -> model` for these class names."""

    def decorate(builder):
        for name in names:
            OFFICIAL_BUILDERS[name] = builder
        return builder

    return decorate


def _take(kwargs, official_class, known):
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"{official_class}: unknown constructor arguments {unknown}; "
                         f"expected some of {sorted(known)}")
    return {name: kwargs[name] for name in known if name in kwargs}


def _train_size(value):
    """The official train_size (1, 3, h, w) or (h, w) -> (h, w)."""
    value = tuple(int(v) for v in value)
    return value[-2:]


def _check_image_channels(official_class, channels):
    if channels != 3:
        raise ValueError(f"{official_class}: only RGB models are supported (3 image channels), "
                         f"got {channels}")


@register_official_class("NAFNet", "NAFNetLocal", "MHNAFNet", "MHNAFNetLocal")
def _build_nafnet(official_class, **kwargs):
    known = ["img_channel", "width", "middle_blk_num", "enc_blk_nums", "dec_blk_nums",
             "n_heads", "combinate_heads", "train_size", "fast_imp", "base_size"]
    args = _take(kwargs, official_class, known)
    _check_image_channels(official_class, args.get("img_channel", 3))
    if args.get("fast_imp"):
        raise ValueError(f"{official_class}: fast_imp=True is not supported (no official config "
                         "uses it)")
    if "base_size" in args:
        raise ValueError(f"{official_class}: a custom base_size is not supported; TLC uses "
                         "1.5 x train_size as every official config does")
    common = dict(width=args.get("width", 16), middle_blocks=args.get("middle_blk_num", 1),
                  enc_blocks=tuple(args.get("enc_blk_nums", ())),
                  dec_blocks=tuple(args.get("dec_blk_nums", ())))
    if official_class.endswith("Local"):
        common["tlc_train_size"] = _train_size(args.get("train_size", (1, 3, 256, 256)))
    if official_class.startswith("MH"):
        return NAFNetMH(heads=int(args.get("n_heads", 4)),
                        combine_heads=bool(args.get("combinate_heads", False)), **common)
    return NAFNet(**common)


@register_official_class("Restormer", "MHRestormer")
def _build_restormer(official_class, **kwargs):
    known = ["inp_channels", "out_channels", "dim", "num_blocks", "num_refinement_blocks",
             "heads", "ffn_expansion_factor", "bias", "LayerNorm_type", "dual_pixel_task",
             "n_heads", "combinate_heads"]
    args = _take(kwargs, official_class, known)
    _check_image_channels(official_class, args.get("inp_channels", 3))
    _check_image_channels(official_class, args.get("out_channels", 3))
    if args.get("dual_pixel_task"):
        raise ValueError(f"{official_class}: dual_pixel_task=True (defocus deblurring from dual "
                         "pixels) is not supported; only single-image deblurring is")
    # Official `heads` are the attention heads per level; the output heads are `n_heads`.
    common = dict(width=args.get("dim", 48),
                  **official_block_counts(args.get("num_blocks", (4, 6, 6, 8))),
                  refinement_blocks=args.get("num_refinement_blocks", 4),
                  attention_heads=tuple(args.get("heads", (1, 2, 4, 8))),
                  ffn_expansion_factor=args.get("ffn_expansion_factor", 2.66),
                  use_bias=bool(args.get("bias", False)),
                  layer_norm_type=args.get("LayerNorm_type", "WithBias"))
    if official_class.startswith("MH"):
        return RestormerMH(heads=int(args.get("n_heads", 4)),
                           combine_heads=bool(args.get("combinate_heads", False)), **common)
    return Restormer(**common)


@register_official_class("HINet", "HINetLocal", "MHHINet", "MHHINetLocal")
def _build_hinet(official_class, **kwargs):
    known = ["in_chn", "wf", "depth", "relu_slope", "hin_position_left", "hin_position_right",
             "n_heads", "combinate_heads", "train_size", "fast_imp"]
    args = _take(kwargs, official_class, known)
    _check_image_channels(official_class, args.get("in_chn", 3))
    # HINet has no global pooling, so the TLC "Local" classes are the same network and their
    # train_size / fast_imp change nothing.
    if not official_class.endswith("Local") and ("train_size" in args or "fast_imp" in args):
        raise ValueError(f"{official_class}: train_size and fast_imp belong to {official_class}"
                         "Local")
    # The official constructor's defaults (the GoPro config passes hin_position_left 3).
    common = dict(width=args.get("wf", 64), depth=args.get("depth", 5),
                  relu_slope=args.get("relu_slope", 0.2),
                  hin_position_left=args.get("hin_position_left", 0),
                  hin_position_right=args.get("hin_position_right", 4))
    if official_class.startswith("MH"):
        return HINetMH(heads=int(args.get("n_heads", 4)),
                       combine_heads=bool(args.get("combinate_heads", False)), **common)
    return HINet(**common)


@register_official_class("MPRNet", "MHMPRNet")
def _build_mprnet(official_class, **kwargs):
    known = ["in_c", "out_c", "n_feat", "scale_unetfeats", "scale_orsnetfeats", "num_cab",
             "kernel_size", "reduction", "bias", "n_heads", "combinate_heads"]
    args = _take(kwargs, official_class, known)
    _check_image_channels(official_class, args.get("in_c", 3))
    _check_image_channels(official_class, args.get("out_c", 3))
    common = dict(width=args.get("n_feat", 96), unet_growth=args.get("scale_unetfeats", 48),
                  orsnet_growth=args.get("scale_orsnetfeats", 32),
                  orb_blocks=args.get("num_cab", 8), kernel_size=args.get("kernel_size", 3),
                  reduction=args.get("reduction", 4), use_bias=bool(args.get("bias", False)))
    if official_class.startswith("MH"):
        # The official multi-head MPRNet is always trained with K = 4 and combination.
        return MPRNetMH(heads=int(args.get("n_heads", 4)),
                        combine_heads=bool(args.get("combinate_heads", True)), **common)
    return MPRNet(**common)


def from_official_config(official_class, **constructor_kwargs):
    """Our model for an official architecture class and its constructor arguments.

    Args:
        official_class: e.g. "NAFNet", "MHNAFNet", "MHNAFNetLocal" (`train_size` builds TLC).
        constructor_kwargs: the official constructor's arguments, by their official names.
    """
    if official_class not in OFFICIAL_BUILDERS:
        raise ValueError(f"Unknown official class {official_class!r}; supported: "
                         f"{sorted(OFFICIAL_BUILDERS)}")
    return OFFICIAL_BUILDERS[official_class](official_class, **constructor_kwargs)


def from_official_options(options):
    """Our model from an official YAML options file (path) or its parsed dict; reads the
    `network_g` section (`type` is the official class)."""
    if isinstance(options, (str, Path)):
        import yaml

        path = Path(options)
        if not path.is_file():
            raise FileNotFoundError(f"Options file not found: {path}")
        options = yaml.safe_load(path.read_text())
    network = dict(options.get("network_g", options))
    if "type" not in network:
        raise ValueError("The options have no network_g.type naming the official class")
    return from_official_config(network.pop("type"), **network)
