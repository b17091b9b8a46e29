"""Official configurations and PyTorch weight import."""

from keras_mhdeblur.convert.official import (OFFICIAL_BUILDERS, from_official_config,
                                             from_official_options, register_official_class)
from keras_mhdeblur.convert.torch_weights import (WeightImportError, clean_state_dict,
                                                  load_torch_checkpoint, load_torch_weights,
                                                  official_parameter_map)
