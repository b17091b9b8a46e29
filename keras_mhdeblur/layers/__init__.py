"""Building blocks shared by the backbones."""

from keras_mhdeblur.layers.conv import (DepthwiseConv2D, depthwise_conv, torch_conv2d,
                                        torch_conv2d_transpose, torch_depthwise_conv2d)
from keras_mhdeblur.layers.gates import simple_gate
from keras_mhdeblur.layers.normalization import (ChannelLayerNorm, channel_layer_norm,
                                                 overflow_safe_norms)
from keras_mhdeblur.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from keras_mhdeblur.layers.pooling import spatial_mean, tlc_kernel_size
from keras_mhdeblur.layers.resize import downsample_2x, upsample_2x
from keras_mhdeblur.layers.supervised_attention import SupervisedAttention
