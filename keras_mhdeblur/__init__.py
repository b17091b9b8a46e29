"""keras_mhdeblur: multi-head image deblurring for Keras 3 ("Multi-Outputs Is All You Need For
Deblur", arXiv 2208.13029)."""

from keras_mhdeblur import heads, layers, losses, metrics
from keras_mhdeblur.heads import MultiHeadOutput, combination_matrix, num_outputs, output_pairs
from keras_mhdeblur.losses import MinOverHeads, MultiHeadPSNRLoss
from keras_mhdeblur.metrics import MultiHeadPSNR, WinShare
from keras_mhdeblur.models import (NAMED_CONFIGS, HINet, HINetMH, MPRNet, MPRNetMH,
                                   MultiHeadRestorationModel, NAFNet, NAFNetMH, Restormer,
                                   RestormerMH, build_model)
from keras_mhdeblur.optimizers import official_optimizer, official_schedule
from keras_mhdeblur.presets import from_preset, list_presets

__version__ = "0.1.0"
from keras_mhdeblur.convert import (WeightImportError, from_official_config,
                                    from_official_options, load_torch_weights)
