"""Backbones in multi-head and single-head form, and named configurations."""

from keras_mhdeblur.models.base import MultiHeadRestorationModel
from keras_mhdeblur.models.hinet import HINet, HINetMH
from keras_mhdeblur.models.mprnet import MPRNet, MPRNetMH
from keras_mhdeblur.models.nafnet import NAFBlockStack, NAFNet, NAFNetMH, naf_block
from keras_mhdeblur.models.restormer import Restormer, RestormerBlock, RestormerMH
from keras_mhdeblur.models.surgery import rebuilt, with_tlc

# Named configurations: name -> (multi-head class, single-head class, constructor arguments).
NAMED_CONFIGS = {
    "nafnet-w32": (NAFNetMH, NAFNet, dict(width=32)),
    "nafnet-w64": (NAFNetMH, NAFNet, dict(width=64)),
    "hinet": (HINetMH, HINet, dict()),
    "mprnet": (MPRNetMH, MPRNet, dict()),
    "restormer": (RestormerMH, Restormer, dict()),
}


def build_model(config="nafnet-w32", heads=4, combine_heads=True, **overrides):
    """A model from a named configuration (see `NAMED_CONFIGS`).

    `heads=1` gives the single-head official model (output (B, H, W, 3)); any other K the
    multi-head one. `overrides` replace constructor arguments, named alike in every backbone:
    `width` (the base channel count, e.g. `width=8` for tests), `use_bias`, and block counts
    `enc_blocks` / `middle_blocks` / `dec_blocks` where a backbone has them.
    """
    if config not in NAMED_CONFIGS:
        raise ValueError(f"Unknown config {config!r}; expected one of {sorted(NAMED_CONFIGS)}")
    multi_head_class, single_head_class, arguments = NAMED_CONFIGS[config]
    arguments = {**arguments, **overrides}
    if heads == 1:
        return single_head_class(**arguments)
    return multi_head_class(heads=heads, combine_heads=combine_heads, **arguments)
