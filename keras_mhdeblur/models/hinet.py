"""HINet (Chen et al., "HINet: Half Instance Normalization Network for Image Restoration", 2021)
and its multi-head form (docs/method.md, "HINet").

Two U-Nets in sequence. Stage 1 restores the image and hands its features to stage 2 through a
supervised attention module (SAM) and cross-stage feature fusion (CSFF: stage 1's encoder and
decoder features are added to stage 2's encoder). The deepest levels use half instance
normalisation (HIN): instance norm on the first half of the channels only. Layers are named after
the official module paths ("down_path_1.3.norm", "up_path_2.0.conv_block.conv_1", ...) so official
weights load by name.
"""

import keras
from keras import ops

from keras_mhdeblur.layers import SupervisedAttention, torch_conv2d, torch_conv2d_transpose
from keras_mhdeblur.losses import MinOverHeads
from keras_mhdeblur.models.base import MultiHeadRestorationModel, SingleHead


class UNetConvBlock(keras.layers.Layer):
    """(B, H, W, C_in) -> (B, H, W, C), or (down (B, H/2, W/2, C), skip (B, H, W, C)) with
    `downsample`.

    conv3x3 -> [HIN] -> LeakyReLU -> conv3x3 -> LeakyReLU, plus a 1x1 conv of the input;
    `call(x, enc, dec)` also adds the CSFF convs of stage 1's features (`use_csff`). The
    downsampling conv is 4x4, stride 2, padding 1, no bias.
    """

    def __init__(self, in_channels, channels, downsample, relu_slope, use_csff=False,
                 use_hin=False, **kwargs):
        super().__init__(**kwargs)
        if use_hin and channels % 2:
            raise ValueError(f"{self.name}: half instance norm needs an even channel count, "
                             f"got {channels}")
        self.relu_slope = relu_slope
        self.downsample = downsample
        self.use_csff = use_csff and downsample
        self.identity = torch_conv2d(channels, 1, in_channels, name="identity")
        self.conv_1 = torch_conv2d(channels, 3, in_channels, name="conv_1")
        self.conv_2 = torch_conv2d(channels, 3, channels, name="conv_2")
        self.norm = None
        if use_hin:
            # InstanceNorm2d(affine, no running stats) = one group per channel.
            self.norm = keras.layers.GroupNormalization(
                groups=channels // 2, epsilon=1e-5, name="norm")
        if self.use_csff:
            self.csff_enc = torch_conv2d(channels, 3, channels, name="csff_enc")
            self.csff_dec = torch_conv2d(channels, 3, channels, name="csff_dec")
        if downsample:
            self.down = torch_conv2d(channels, 4, channels, strides=2, padding="valid",
                                     use_bias=False, name="downsample")

    def build(self, input_shape):
        super().build(input_shape)

    def call(self, x, enc=None, dec=None):
        out = self.conv_1(x)
        if self.norm is not None:
            half = out.shape[-1] // 2
            out = ops.concatenate([self.norm(out[..., :half]), out[..., half:]], axis=-1)
        out = ops.leaky_relu(out, self.relu_slope)
        out = ops.leaky_relu(self.conv_2(out), self.relu_slope)
        out = out + self.identity(x)
        if enc is not None and dec is not None:
            if not self.use_csff:
                raise ValueError(f"{self.name} has no CSFF convs")
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if not self.downsample:
            return out
        return self.down(ops.pad(out, ((0, 0), (1, 1), (1, 1), (0, 0)))), out


class UNetUpBlock(keras.layers.Layer):
    """(x (B, H, W, C_in), bridge (B, 2H, 2W, C)) -> (B, 2H, 2W, C): transposed conv 2x2/2,
    concatenation with the bridge, UNetConvBlock (no HIN)."""

    def __init__(self, in_channels, channels, relu_slope, **kwargs):
        super().__init__(**kwargs)
        self.up = torch_conv2d_transpose(channels, 2, 2, name="up")
        self.conv_block = UNetConvBlock(in_channels, channels, False, relu_slope,
                                        name="conv_block")

    def build(self, input_shape):
        super().build(input_shape)

    def call(self, x, bridge):
        return self.conv_block(ops.concatenate([self.up(x), bridge], axis=-1))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class HINetMH(MultiHeadRestorationModel):
    """Multi-head HINet (official `MHHINet` / `MHHINetLocal`: the same network).

    Input (B, H, W, 3) in [0, 1], any H and W (zero-padded to a multiple of 2^(depth-1) and
    cropped back). Output: the list [stage1, stage2] of (B, K', H, W, 3) (the final image is
    stage2), or a dict with `output_format="dict"`. Defaults are the official GoPro config
    (88,684,376 parameters for K = 4). Default loss: the multi-head PSNR loss with weight 0.5 on
    each stage, summed.

    Args:
        heads: K, the number of physical output heads.
        combine_heads: also output the average of every pair of heads
            (docs/method.md, "Head combination").
        width: channels of the first level (official `wf`); level i has width * 2^i.
        depth: U-Net levels (5: 64 ... 1024 channels).
        relu_slope: LeakyReLU negative slope.
        hin_position_left, hin_position_right: encoder levels i with left <= i <= right use
            half instance norm (3 and 4 in the GoPro config; the official constructor defaults
            to 0 and 4).
        selected_output: the output index chosen on a validation split, or None.
    """

    stage_names = ("stage1", "stage2")
    final_stage = "stage2"
    recipe = "hinet"
    pad_mode = "constant"

    def __init__(self, heads=4, combine_heads=True, width=64, depth=5, relu_slope=0.2,
                 hin_position_left=3, hin_position_right=4, single_output=False,
                 selected_output=None, **kwargs):
        super().__init__(heads=heads, combine_heads=combine_heads, single_output=single_output,
                         selected_output=selected_output, **kwargs)
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        self.width, self.depth, self.relu_slope = width, depth, float(relu_slope)
        self.hin_position_left = int(hin_position_left)
        self.hin_position_right = int(hin_position_right)
        self.pad_multiple = 2 ** (depth - 1)

        self.conv_01 = torch_conv2d(width, 3, 3, name="conv_01")
        self.conv_02 = torch_conv2d(width, 3, 3, name="conv_02")
        self.down_path_1, self.down_path_2 = [], []
        in_channels = width
        for level in range(depth):
            channels = width * 2 ** level
            use_hin = self.hin_position_left <= level <= self.hin_position_right
            downsample = level + 1 < depth
            for stage, path in ((1, self.down_path_1), (2, self.down_path_2)):
                path.append(UNetConvBlock(
                    in_channels, channels, downsample, self.relu_slope, use_csff=stage == 2,
                    use_hin=use_hin, name=f"down_path_{stage}.{level}"))
            in_channels = channels
        self.up_path_1, self.up_path_2, self.skip_conv_1, self.skip_conv_2 = [], [], [], []
        for index, level in enumerate(reversed(range(depth - 1))):
            channels = width * 2 ** level
            for stage in (1, 2):
                getattr(self, f"up_path_{stage}").append(UNetUpBlock(
                    in_channels, channels, self.relu_slope, name=f"up_path_{stage}.{index}"))
                getattr(self, f"skip_conv_{stage}").append(
                    torch_conv2d(channels, 3, channels, name=f"skip_conv_{stage}.{index}"))
            in_channels = channels
        self.sam12 = SupervisedAttention(width, heads, kernel_size=3, use_bias=True, name="sam12")
        self.cat12 = torch_conv2d(width, 1, 2 * width, name="cat12")
        self.last = torch_conv2d(3 * heads, 3, width, name="last")
        self._build_with_dummy_input()

    def stage_residuals(self, image):
        # Stage 1: U-Net, then SAM predicts the stage-1 image and gates the features.
        x = self.conv_01(image)
        encs, decs = [], []
        for block in self.down_path_1:
            if block.downsample:
                x, skip = block(x)
                encs.append(skip)
            else:
                x = block(x)
        for up, skip_conv, skip in zip(self.up_path_1, self.skip_conv_1, reversed(encs)):
            x = up(x, skip_conv(skip))
            decs.append(x)
        features, stage1 = self.sam12(x, image)

        # Stage 2: fresh features of the image fused with SAM's, U-Net with CSFF from stage 1.
        x = self.cat12(ops.concatenate([self.conv_02(image), features], axis=-1))
        skips = []
        for block, enc, dec in zip(self.down_path_2, encs + [None], decs[::-1] + [None]):
            if block.downsample:
                x, skip = block(x, enc, dec)
                skips.append(skip)
            else:
                x = block(x)
        for up, skip_conv, skip in zip(self.up_path_2, self.skip_conv_2, reversed(skips)):
            x = up(x, skip_conv(skip))
        return [stage1, self.last(x)], x

    def default_loss(self):
        return MinOverHeads("psnr", weight=0.5)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "depth": self.depth,
                "relu_slope": self.relu_slope, "hin_position_left": self.hin_position_left,
                "hin_position_right": self.hin_position_right}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class HINet(SingleHead, HINetMH):
    """The official single-head HINet: output [stage1, stage2] of (B, H, W, 3). Defaults: GoPro
    (88,668,806 parameters). Same arguments as `HINetMH` without the head options."""
