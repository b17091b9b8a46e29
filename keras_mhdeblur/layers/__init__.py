"""Building blocks shared by the backbones."""

from keras_mhdeblur.layers.conv import torch_conv2d, torch_conv2d_transpose, torch_depthwise_conv2d
from keras_mhdeblur.layers.gates import SimpleGate
from keras_mhdeblur.layers.pixel_shuffle import PixelShuffle, PixelUnshuffle
from keras_mhdeblur.layers.pooling import SpatialMeanPool, tlc_kernel_size
