"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", 2022) and its multi-head form.

Follows the official architecture (METHOD 3.1) layer for layer; layers are named after the
official module paths ("encoders.0.0.conv1", "ups.1.0", ...) so official weights load by name.
No nonlinear activations: SimpleGate multiplies two halves of the channels, and the simplified
channel attention (SCA) is a pooled 1x1 conv with no sigmoid.
"""

import keras
from keras import ops

from keras_mhdeblur.layers import (ChannelLayerNorm, PixelShuffle, SimpleGate, SpatialMeanPool,
                                   tlc_kernel_size, torch_conv2d, torch_depthwise_conv2d)
from keras_mhdeblur.models.base import MultiHeadRestorationModel, SingleHead


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class NAFBlock(keras.layers.Layer):
    """(B, H, W, C) -> (B, H, W, C). Starts as the identity: beta and gamma are zero-initialised.

    Args:
        channels: C.
        dw_expand, ffn_expand: channel expansion of the depthwise and feed-forward branches
            (2 and 2 in every official config); C * expand must be even for SimpleGate.
        tlc_kernel_size: (kh, kw) local-pool window for TLC, None for the global pool.
    """

    def __init__(self, channels, dw_expand=2, ffn_expand=2, tlc_kernel_size=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.dw_expand = dw_expand
        self.ffn_expand = ffn_expand
        self.tlc_kernel_size = tlc_kernel_size
        dw_channels, ffn_channels = channels * dw_expand, channels * ffn_expand
        for branch, expanded in (("dw_expand", dw_channels), ("ffn_expand", ffn_channels)):
            if expanded % 2:
                raise ValueError(
                    f"NAFBlock: channels * {branch} = {channels} * {expanded // channels} = "
                    f"{expanded} is odd, so SimpleGate cannot split it in two halves; use an even "
                    "width or expansion.")
        self.norm1 = ChannelLayerNorm(epsilon=1e-6, name="norm1")
        self.conv1 = torch_conv2d(dw_channels, 1, channels, name="conv1")
        self.conv2 = torch_depthwise_conv2d(3, name="conv2")
        self.gate = SimpleGate(name="gate")
        self.sca_pool = SpatialMeanPool(tlc_kernel_size, name="sca_pool")
        self.sca_conv = torch_conv2d(dw_channels // 2, 1, dw_channels // 2, name="sca.1")
        self.conv3 = torch_conv2d(channels, 1, dw_channels // 2, name="conv3")
        self.norm2 = ChannelLayerNorm(epsilon=1e-6, name="norm2")
        self.conv4 = torch_conv2d(ffn_channels, 1, channels, name="conv4")
        self.conv5 = torch_conv2d(channels, 1, ffn_channels // 2, name="conv5")

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(
                f"{self.name}: expected {self.channels} channels, got input shape "
                f"{tuple(input_shape)}")
        self.beta = self.add_weight(shape=(self.channels,), initializer="zeros", name="beta")
        self.gamma = self.add_weight(shape=(self.channels,), initializer="zeros", name="gamma")
        super().build(input_shape)

    def call(self, inputs):
        x = self.conv2(self.conv1(self.norm1(inputs)))
        x = self.gate(x)
        x = x * self.sca_conv(self.sca_pool(x))
        y = inputs + self.conv3(x) * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "dw_expand": self.dw_expand,
                "ffn_expand": self.ffn_expand, "tlc_kernel_size": self.tlc_kernel_size}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class NAFNetMH(MultiHeadRestorationModel):
    """Multi-head NAFNet (official `MHNAFNet`, or `MHNAFNetLocal` with `tlc_train_size`).

    Input (B, H, W, 3) in [0, 1], any H and W; output (B, K', H, W, 3) with K' = K(K+1)/2 when
    `combine_heads`, else K. Defaults are the official GoPro width-32 config
    (17,114,508 parameters for K = 4); `width=64` gives the width-64 one.

    Args:
        heads: K, the number of physical output heads.
        combine_heads: also output the average of every pair of heads (METHOD 2).
        width: channels of the first level (w); levels have w, 2w, 4w, 8w, middle 16w.
        enc_blocks, middle_blocks, dec_blocks: NAFBlocks per level.
        tlc_train_size: (h, w) training crop size to build the TLC local-pooling version
            (METHOD 6.3) with the same weights; None (default) keeps global pooling.
        dw_expand, ffn_expand: NAFBlock expansions (2, 2 officially).
        selected_output: the output index chosen on a validation split (used by inference and
            export), or None.
    """

    recipe = "nafnet"

    def __init__(self, heads=4, combine_heads=True, width=32, enc_blocks=(1, 1, 1, 28),
                 middle_blocks=1, dec_blocks=(1, 1, 1, 1), tlc_train_size=None, dw_expand=2,
                 ffn_expand=2, single_output=False, selected_output=None, **kwargs):
        super().__init__(heads=heads, combine_heads=combine_heads, single_output=single_output,
                         selected_output=selected_output, **kwargs)
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError(
                f"enc_blocks and dec_blocks need one entry per level; got {len(enc_blocks)} "
                f"and {len(dec_blocks)}")
        self.width = width
        self.enc_blocks = tuple(int(n) for n in enc_blocks)
        self.middle_blocks = int(middle_blocks)
        self.dec_blocks = tuple(int(n) for n in dec_blocks)
        self.tlc_train_size = None if tlc_train_size is None else tuple(
            int(s) for s in tlc_train_size)
        self.dw_expand, self.ffn_expand = dw_expand, ffn_expand
        self.pad_multiple = 2 ** len(self.enc_blocks)

        def blocks(prefix, count, channels, level):
            tlc = None if self.tlc_train_size is None else tlc_kernel_size(
                self.tlc_train_size, level, self.pad_multiple)
            return [NAFBlock(channels, dw_expand, ffn_expand, tlc, name=f"{prefix}.{index}")
                    for index in range(count)]

        self.intro = torch_conv2d(width, 3, 3, name="intro")
        self.encoders, self.downs = [], []
        channels = width
        for level, count in enumerate(self.enc_blocks):
            self.encoders.append(blocks(f"encoders.{level}", count, channels, level))
            self.downs.append(torch_conv2d(2 * channels, 2, channels, strides=2, padding="valid",
                                           name=f"downs.{level}"))
            channels *= 2
        self.middle_blks = blocks("middle_blks", self.middle_blocks, channels,
                                  len(self.enc_blocks))
        self.ups, self.decoders = [], []
        for index, count in enumerate(self.dec_blocks):
            self.ups.append(torch_conv2d(2 * channels, 1, channels, use_bias=False,
                                         name=f"ups.{index}.0"))
            channels //= 2
            level = len(self.enc_blocks) - 1 - index
            self.decoders.append(blocks(f"decoders.{index}", count, channels, level))
        self.pixel_shuffle = PixelShuffle(2, name="pixel_shuffle")
        self.ending = torch_conv2d(3 * heads, 3, width, name="ending")
        self._build_with_dummy_input()

    def restore(self, image):
        x = self.intro(image)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            for block in encoder:
                x = block(x)
            skips.append(x)
            x = down(x)
        for block in self.middle_blks:
            x = block(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = self.pixel_shuffle(up(x)) + skip
            for block in decoder:
                x = block(x)
        return [self.ending(x)]

    def get_config(self):
        return {**super().get_config(), "width": self.width, "enc_blocks": self.enc_blocks,
                "middle_blocks": self.middle_blocks, "dec_blocks": self.dec_blocks,
                "tlc_train_size": self.tlc_train_size, "dw_expand": self.dw_expand,
                "ffn_expand": self.ffn_expand}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class NAFNet(SingleHead, NAFNetMH):
    """The official single-head NAFNet: output (B, H, W, 3). Defaults: GoPro width 32
    (17,111,907 parameters). Same arguments as `NAFNetMH` without the head options."""
