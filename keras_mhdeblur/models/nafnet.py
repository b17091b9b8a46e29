"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", 2022) and its multi-head form.

Follows the official architecture (docs/method.md, "NAFNet") layer for layer; layers are named
after the official module paths ("encoders.0.0.conv1", "ups.1.0", ...) so official weights load by
name. No nonlinear activations: SimpleGate multiplies two halves of the channels, and the
simplified channel attention (SCA) is a pooled 1x1 conv with no sigmoid.
"""

import math

import keras
from keras import ops

from keras_mhdeblur.layers import (PixelShuffle, channel_layer_norm, depthwise_conv, simple_gate,
                                   spatial_mean, tlc_kernel_size, torch_conv2d)
from keras_mhdeblur.models.base import MultiHeadRestorationModel, SingleHead


def _uniform(fan_in):
    # PyTorch's default conv init, U(+-1/sqrt(fan_in)) for weights and biases
    # (docs/method.md, "Porting notes").
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound)


def naf_block(x, weights, tlc_kernel_size=None):
    """One NAFBlock, (B, H, W, C) -> (B, H, W, C), as a function of its weights (a dict of the
    tensors `NAFBlockStack.block_parameters` lists, Keras layouts; 1x1 convs as (C_in, C_out)
    matrices). A function, so that a stack of blocks can run it under `ops.scan`."""
    def norm(values, name):
        normalised = channel_layer_norm(ops.cast(values, "float32"), weights[f"{name}_gamma"],
                                        weights[f"{name}_beta"], epsilon=1e-6)
        return ops.cast(normalised, values.dtype)

    def conv1x1(values, name):
        return ops.matmul(values, weights[f"{name}_kernel"]) + weights[f"{name}_bias"]

    y = conv1x1(norm(x, "norm1"), "conv1")
    y = depthwise_conv(y, weights["conv2_kernel"]) + weights["conv2_bias"]
    y = simple_gate(y)
    y = y * conv1x1(spatial_mean(y, tlc_kernel_size), "sca")
    x = x + conv1x1(y, "conv3") * weights["beta"]
    y = conv1x1(simple_gate(conv1x1(norm(x, "norm2"), "conv4")), "conv5")
    return x + y * weights["gamma"]


def _fold(step, x, stacked):
    """`x = step(x, weights)` for each slice of `stacked` along its leading axis, as one loop.

    `ops.scan`, except on TensorFlow: there Keras' scan is an unbounded `tf.while_loop`, whose
    gradient XLA (`jit_compile=True`) cannot compile; `tf.foldl` bounds it."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.foldl(step, stacked, initializer=x)
    return ops.scan(lambda features, weights: (step(features, weights), None), x, stacked)[0]


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class NAFBlockStack(keras.layers.Layer):
    """`count` NAFBlocks in a row, (B, H, W, C) -> (B, H, W, C); the official
    `nn.Sequential(*[NAFBlock(c)] * count)`.

    The blocks' weights are stacked along a leading axis of length `count`, and with `scan=True`
    the blocks run as one `ops.scan` over them: the compiled graph holds one block instead of
    `count` (NAFNet-w32's 28-block level otherwise dominates XLA compile time). Every block starts
    as the identity: beta and gamma are zero-initialised.

    Args:
        count: number of blocks.
        channels: C.
        dw_expand, ffn_expand: channel expansion of the depthwise and feed-forward branches
            (2 and 2 in every official config); C * expand must be even for SimpleGate.
        tlc_kernel_size: (kh, kw) local-pool window for TLC, None for the global pool.
        scan: run the blocks with `ops.scan` (same results as the unrolled loop).
    """

    def __init__(self, count, channels, dw_expand=2, ffn_expand=2, tlc_kernel_size=None,
                 scan=False, **kwargs):
        super().__init__(**kwargs)
        self.count, self.channels = int(count), int(channels)
        self.dw_expand, self.ffn_expand = dw_expand, ffn_expand
        self.tlc_kernel_size = None if tlc_kernel_size is None else tuple(tlc_kernel_size)
        self.scan = bool(scan)
        for branch, expand in (("dw_expand", dw_expand), ("ffn_expand", ffn_expand)):
            if (channels * expand) % 2:
                raise ValueError(
                    f"NAFBlock: channels * {branch} = {channels} * {expand} = {channels * expand}"
                    " is odd, so SimpleGate cannot split it in two halves; use an even width or "
                    "expansion.")

    def block_parameters(self):
        """{name: (shape of one block's tensor, initializer, official name, official layout
        -> ours)} for every parameter of a block."""
        c, dw, ffn = self.channels, self.channels * self.dw_expand, self.channels * self.ffn_expand
        matrix = lambda w: w[:, :, 0, 0].T  # noqa: E731  (O, I, 1, 1) -> (I, O)
        depthwise = lambda w: w.transpose(2, 3, 0, 1)  # noqa: E731  (C, 1, 3, 3) -> (3, 3, C, 1)
        flat = lambda w: w.reshape(-1)  # noqa: E731  (1, C, 1, 1) -> (C,)
        ones, zeros = keras.initializers.Ones(), keras.initializers.Zeros()
        parameters = {}
        for norm in ("norm1", "norm2"):
            parameters[f"{norm}_gamma"] = ((c,), ones, f"{norm}.weight", None)
            parameters[f"{norm}_beta"] = ((c,), zeros, f"{norm}.bias", None)
        for name, official, c_in, c_out in (("conv1", "conv1", c, dw), ("sca", "sca.1", dw // 2,
                                             dw // 2), ("conv3", "conv3", dw // 2, c),
                                            ("conv4", "conv4", c, ffn), ("conv5", "conv5",
                                                                         ffn // 2, c)):
            parameters[f"{name}_kernel"] = ((c_in, c_out), _uniform(c_in), f"{official}.weight",
                                            matrix)
            parameters[f"{name}_bias"] = ((c_out,), _uniform(c_in), f"{official}.bias", None)
        parameters["conv2_kernel"] = ((3, 3, dw, 1), _uniform(9), "conv2.weight", depthwise)
        parameters["conv2_bias"] = ((dw,), _uniform(9), "conv2.bias", None)
        parameters["beta"] = ((c,), zeros, "beta", flat)
        parameters["gamma"] = ((c,), zeros, "gamma", flat)
        return parameters

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(f"{self.name}: expected {self.channels} channels, got input shape "
                             f"{tuple(input_shape)}")
        self.stacked = {name: self.add_weight(shape=(self.count, *shape), initializer=init,
                                              name=name)
                        for name, (shape, init, _, _) in self.block_parameters().items()}
        super().build(input_shape)

    def official_parameters(self):
        """{official name relative to this layer ("3.conv1.weight"): (variable, converter, block
        index)} for the generic weight importer."""
        return {f"{index}.{official}": (self.stacked[name], converter, index)
                for name, (_, _, official, converter) in self.block_parameters().items()
                for index in range(self.count)}

    def call(self, x):
        weights = {name: ops.convert_to_tensor(variable) for name, variable in self.stacked.items()}
        if self.scan and self.count > 1:
            return _fold(lambda features, block_weights: naf_block(
                features, block_weights, self.tlc_kernel_size), x, weights)
        # One unstack per weight: its gradient is a single concatenation. Indexing the stack
        # block by block would give each block a gradient the size of the whole stack, summed
        # 28 times over NAFNet-w32's deep level (measured 1.2-1.5x slower steps on the CPU).
        per_block = {name: ops.unstack(value, axis=0) for name, value in weights.items()}
        block = self._block_function()
        for index in range(self.count):
            x = block(x, {name: values[index] for name, values in per_block.items()})
        return x

    def _block_function(self):
        """naf_block for this stack's blocks. In a TensorFlow graph with several blocks, a
        `tf.function` of it: the 28 blocks of NAFNet-w32's deep level are then traced (and
        differentiated) once instead of 28 times, which takes a third off the first training
        step; Grappler inlines the calls, so the steps run the same graph as before."""
        def block(x, weights):
            return naf_block(x, weights, self.tlc_kernel_size)

        if keras.backend.backend() != "tensorflow" or self.count < 2:
            return block
        import tensorflow as tf

        if tf.executing_eagerly():
            return block
        traced = self.__dict__.get("_traced_block")
        if traced is None:
            traced = tf.function(block, autograph=False)
            # Set around Keras' attribute tracking: a traced function is not layer state.
            object.__setattr__(self, "_traced_block", traced)
        return traced

    def get_config(self):
        return {**super().get_config(), "count": self.count, "channels": self.channels,
                "dw_expand": self.dw_expand, "ffn_expand": self.ffn_expand,
                "tlc_kernel_size": self.tlc_kernel_size, "scan": self.scan}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class NAFNetMH(MultiHeadRestorationModel):
    """Multi-head NAFNet (official `MHNAFNet`, or `MHNAFNetLocal` with `tlc_train_size`).

    Input (B, H, W, 3) in [0, 1], any H and W; output (B, K', H, W, 3) with K' = K(K+1)/2 when
    `combine_heads`, else K. Defaults are the official GoPro width-32 config
    (17,114,508 parameters for K = 4); `width=64` gives the width-64 one.

    Args:
        heads: K, the number of physical output heads.
        combine_heads: also output the average of every pair of heads
            (docs/method.md, "Head combination").
        width: channels of the first level (w); levels have w, 2w, 4w, 8w, middle 16w.
        enc_blocks, middle_blocks, dec_blocks: NAFBlocks per level.
        tlc_train_size: (h, w) training crop size to build the TLC local-pooling version
            (docs/method.md, "TLC") with the same weights; None (default) keeps global pooling.
        dw_expand, ffn_expand: NAFBlock expansions (2, 2 officially).
        scan_blocks: run each level's blocks as one `ops.scan` (see `NAFBlockStack`): a much
            smaller XLA graph, same results and weights. Off by default: on the CPU the scanned
            training step measured several times slower (benchmarks/train_step.py).
        selected_output: the output index chosen on a validation split (used by inference and
            export), or None.
    """

    recipe = "nafnet"

    def __init__(self, heads=4, combine_heads=True, width=32, enc_blocks=(1, 1, 1, 28),
                 middle_blocks=1, dec_blocks=(1, 1, 1, 1), tlc_train_size=None, dw_expand=2,
                 ffn_expand=2, scan_blocks=False, single_output=False, selected_output=None,
                 **kwargs):
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
        self.scan_blocks = bool(scan_blocks)
        self.pad_multiple = 2 ** len(self.enc_blocks)

        def blocks(name, count, channels, level):
            tlc = None if self.tlc_train_size is None else tlc_kernel_size(
                self.tlc_train_size, level, self.pad_multiple)
            return NAFBlockStack(count, channels, dw_expand, ffn_expand, tlc, self.scan_blocks,
                                 name=name)

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

    def stage_residuals(self, image):
        x = self.intro(image)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(self.pixel_shuffle(up(x)) + skip)
        return [self.ending(x)], x

    def get_config(self):
        return {**super().get_config(), "width": self.width, "enc_blocks": self.enc_blocks,
                "middle_blocks": self.middle_blocks, "dec_blocks": self.dec_blocks,
                "tlc_train_size": self.tlc_train_size, "dw_expand": self.dw_expand,
                "ffn_expand": self.ffn_expand, "scan_blocks": self.scan_blocks}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class NAFNet(SingleHead, NAFNetMH):
    """The official single-head NAFNet: output (B, H, W, 3). Defaults: GoPro width 32
    (17,111,907 parameters). Same arguments as `NAFNetMH` without the head options."""
