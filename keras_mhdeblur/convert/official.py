"""Build our models from the official class names and constructor arguments.

`from_official_config("MHNAFNetLocal", width=32, enc_blk_nums=[1, 1, 1, 28], ...)` takes the
arguments exactly as the official code (and the `network_g` section of its YAML options) spells
them, so an official checkpoint's architecture is one call away.
"""

from pathlib import Path

from keras_mhdeblur.models import NAFNet, NAFNetMH

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
