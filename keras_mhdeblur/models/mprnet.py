"""MPRNet (Zamir et al., "Multi-Stage Progressive Image Restoration", 2021), deblurring config,
and its multi-head form (docs/method.md, "MPRNet").

Three stages, each seeing more of the image: stage 1 runs a U-Net on the four quadrants, stage 2
on the top and bottom halves, stage 3 (ORSNet, no downsampling) on the whole image. Supervised
attention modules (SAM12, SAM23) pass each stage's image and gated features on; cross-stage
feature fusion (CSFF) adds stage 1's U-Net features to stage 2's encoder, and stage 2's to
ORSNet. Building block: the channel attention block (CAB); one PReLU (a single parameter) is
shared by every CAB. Layers are named after the official module paths
("stage1_encoder.encoder_level2.0.CA.conv_du.0", "stage3_orsnet.orb1.body.8", ...) so official
weights load by name.
"""

import keras
from keras import ops

from keras_mhdeblur.layers import SupervisedAttention, downsample_2x, torch_conv2d, upsample_2x
from keras_mhdeblur.losses import MinOverHeads
from keras_mhdeblur.models.base import MultiHeadRestorationModel, SingleHead
from keras_mhdeblur.models.blocks import renamed_arguments, run_blocks


class _Block(keras.layers.Layer):
    """A container of sublayers: built by its first call (no symbolic pre-pass)."""

    def build(self, input_shape):
        super().build(input_shape)


class ChannelAttention(_Block):
    """(B, H, W, C) -> x * sigmoid(conv(relu(conv(mean_hw x)))), reduction C -> C/r -> C."""

    def __init__(self, channels, reduction, use_bias, **kwargs):
        super().__init__(**kwargs)
        self.squeeze = torch_conv2d(channels // reduction, 1, channels, use_bias=use_bias,
                                    name="conv_du.0")
        self.excite = torch_conv2d(channels, 1, channels // reduction, use_bias=use_bias,
                                   name="conv_du.2")

    def call(self, x):
        y = ops.mean(x, axis=(1, 2), keepdims=True)
        return x * ops.sigmoid(self.excite(ops.relu(self.squeeze(y))))


class CAB(_Block):
    """Channel attention block, (B, H, W, C) -> (B, H, W, C): x + CA(conv(act(conv(x)))).
    `act` is the model's shared PReLU layer."""

    def __init__(self, channels, kernel_size, reduction, use_bias, act, **kwargs):
        super().__init__(**kwargs)
        self.conv_a = torch_conv2d(channels, kernel_size, channels, use_bias=use_bias,
                                   name="body.0")
        self.act = act
        self.conv_b = torch_conv2d(channels, kernel_size, channels, use_bias=use_bias,
                                   name="body.2")
        self.attention = ChannelAttention(channels, reduction, use_bias, name="CA")

    def call(self, x):
        return x + self.attention(self.conv_b(self.act(self.conv_a(x))))


class DownSample(_Block):
    """(B, H, W, C) -> (B, H/2, W/2, C + growth): bilinear x0.5, then a 1x1 conv."""

    def __init__(self, channels, growth, **kwargs):
        super().__init__(**kwargs)
        self.conv = torch_conv2d(channels + growth, 1, channels, use_bias=False, name="down.1")

    def call(self, x):
        return self.conv(downsample_2x(x))


class UpSample(_Block):
    """(B, H, W, C + growth) -> (B, 2H, 2W, C): bilinear x2, then a 1x1 conv; `call(x, skip)`
    adds a skip connection (the official SkipUpSample)."""

    def __init__(self, channels, growth, **kwargs):
        super().__init__(**kwargs)
        self.conv = torch_conv2d(channels, 1, channels + growth, use_bias=False, name="up.1")

    def call(self, x, skip=None):
        x = self.conv(upsample_2x(x))
        return x if skip is None else x + skip


class Encoder(_Block):
    """3-level U-Net encoder of 2 CABs per level (C, C + g, C + 2g channels) -> [enc1, enc2,
    enc3]. With `csff`, `call(x, encoder_outs, decoder_outs)` adds 1x1 convs of the previous
    stage's features at each level."""

    def __init__(self, channels, kernel_size, reduction, use_bias, act, growth, csff, **kwargs):
        super().__init__(**kwargs)
        widths = [channels + level * growth for level in range(3)]
        self.levels = [[CAB(width, kernel_size, reduction, use_bias, act,
                            name=f"encoder_level{level + 1}.{index}") for index in range(2)]
                       for level, width in enumerate(widths)]
        self.downs = [DownSample(widths[0], growth, name="down12"),
                      DownSample(widths[1], growth, name="down23")]
        self.csff = csff
        if csff:
            self.csff_enc = [torch_conv2d(width, 1, width, use_bias=use_bias,
                                          name=f"csff_enc{level + 1}")
                             for level, width in enumerate(widths)]
            self.csff_dec = [torch_conv2d(width, 1, width, use_bias=use_bias,
                                          name=f"csff_dec{level + 1}")
                             for level, width in enumerate(widths)]

    def call(self, x, encoder_outs=None, decoder_outs=None):
        outputs = []
        for level, blocks in enumerate(self.levels):
            if level:
                x = self.downs[level - 1](x)
            x = run_blocks(blocks, x)
            if encoder_outs is not None and decoder_outs is not None:
                x = (x + self.csff_enc[level](encoder_outs[level])
                     + self.csff_dec[level](decoder_outs[level]))
            outputs.append(x)
        return outputs


class Decoder(_Block):
    """[enc1, enc2, enc3] -> [dec1, dec2, dec3]: CABs per level, up = bilinear x2 + 1x1 conv,
    skips through a CAB."""

    def __init__(self, channels, kernel_size, reduction, use_bias, act, growth, **kwargs):
        super().__init__(**kwargs)
        widths = [channels + level * growth for level in range(3)]
        self.levels = [[CAB(width, kernel_size, reduction, use_bias, act,
                            name=f"decoder_level{level + 1}.{index}") for index in range(2)]
                       for level, width in enumerate(widths)]
        self.skip_attn = [CAB(widths[level], kernel_size, reduction, use_bias, act,
                              name=f"skip_attn{level + 1}") for level in range(2)]
        self.ups = [UpSample(widths[0], growth, name="up21"),
                    UpSample(widths[1], growth, name="up32")]

    def call(self, encoder_outs):
        x = run_blocks(self.levels[2], encoder_outs[2])
        outputs = [x]
        for level in (1, 0):
            x = self.ups[level](x, self.skip_attn[level](encoder_outs[level]))
            x = run_blocks(self.levels[level], x)
            outputs.insert(0, x)
        return outputs


class ORB(_Block):
    """Original-resolution block: x + conv(CAB^n(x)), n = `blocks` (the conv has no bias)."""

    def __init__(self, channels, kernel_size, reduction, use_bias, act, blocks, **kwargs):
        super().__init__(**kwargs)
        self.body = [CAB(channels, kernel_size, reduction, use_bias, act, name=f"body.{index}")
                     for index in range(blocks)]
        self.body.append(torch_conv2d(channels, kernel_size, channels, use_bias=False,
                                      name=f"body.{blocks}"))

    def call(self, x):
        return x + run_blocks(self.body, x)


class ORSNet(_Block):
    """Stage 3 at full resolution and C + o channels: 3 ORBs, each followed by the stage-2
    encoder and decoder features of one level, upsampled to full size and projected (1x1)."""

    def __init__(self, channels, orsnet_growth, kernel_size, reduction, use_bias, act,
                 unet_growth, orb_blocks, **kwargs):
        super().__init__(**kwargs)
        width = channels + orsnet_growth
        self.orbs = [ORB(width, kernel_size, reduction, use_bias, act, orb_blocks,
                         name=f"orb{index + 1}") for index in range(3)]
        self.up_enc = [[], [UpSample(channels, unet_growth, name="up_enc1")],
                       [UpSample(channels + unet_growth, unet_growth, name="up_enc2.0"),
                        UpSample(channels, unet_growth, name="up_enc2.1")]]
        self.up_dec = [[], [UpSample(channels, unet_growth, name="up_dec1")],
                       [UpSample(channels + unet_growth, unet_growth, name="up_dec2.0"),
                        UpSample(channels, unet_growth, name="up_dec2.1")]]
        self.conv_enc = [torch_conv2d(width, 1, channels, use_bias=use_bias,
                                      name=f"conv_enc{index + 1}") for index in range(3)]
        self.conv_dec = [torch_conv2d(width, 1, channels, use_bias=use_bias,
                                      name=f"conv_dec{index + 1}") for index in range(3)]

    def call(self, x, encoder_outs, decoder_outs):
        for level, orb in enumerate(self.orbs):
            x = (orb(x) + self.conv_enc[level](run_blocks(self.up_enc[level], encoder_outs[level]))
                 + self.conv_dec[level](run_blocks(self.up_dec[level], decoder_outs[level])))
        return x


def _split_batch(x, parts):
    return ops.split(x, parts, axis=0)


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
@renamed_arguments(num_cab="orb_blocks")
class MPRNetMH(MultiHeadRestorationModel):
    """Multi-head MPRNet (official `MHMPRNet`, whose class is also called `MPRNet`).

    Input (B, H, W, 3) in [0, 1], any H and W (reflect-padded to a multiple of 8, as the
    official test scripts do, and cropped back; 8 makes the quadrants' two downsamplings exact).
    Output: the list [stage3, stage2, stage1] of (B, K', H, W, 3) (the final image is stage3),
    or a dict with `output_format="dict"`. Defaults are the official deblurring config
    (20,140,897 parameters for K = 4). Default loss: MPRNet's multi-head loss (Charbonnier
    + 0.05 edge, min over heads) on each stage, summed.

    Args:
        heads: K, the number of physical output heads.
        combine_heads: also output the average of every pair of heads
            (docs/method.md, "Head combination").
        width: feature channels (official `n_feat`).
        unet_growth: channels added per U-Net level (official `scale_unetfeats`).
        orsnet_growth: channels ORSNet adds to `width` (official `scale_orsnetfeats`).
        orb_blocks: CABs in each ORB (official `num_cab`).
        kernel_size: convolution kernel size.
        reduction: channel-attention reduction.
        use_bias: biases in the convolutions that have one officially (official `bias`).
        selected_output: the output index chosen on a validation split, or None.
    """

    stage_names = ("stage3", "stage2", "stage1")
    final_stage = "stage3"
    recipe = "mprnet"
    pad_multiple = 8
    pad_mode = "reflect"

    def __init__(self, heads=4, combine_heads=True, width=96, unet_growth=48, orsnet_growth=32,
                 orb_blocks=8, kernel_size=3, reduction=4, use_bias=False, single_output=False,
                 selected_output=None, **kwargs):
        super().__init__(heads=heads, combine_heads=combine_heads, single_output=single_output,
                         selected_output=selected_output, **kwargs)
        for name, value in (("width", width), ("unet_growth", unet_growth),
                            ("orsnet_growth", orsnet_growth), ("kernel_size", kernel_size),
                            ("reduction", reduction)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.width, self.unet_growth, self.orsnet_growth = width, unet_growth, orsnet_growth
        self.orb_blocks, self.kernel_size, self.reduction = int(orb_blocks), kernel_size, reduction
        self.use_bias = bool(use_bias)
        block_args = (kernel_size, reduction, self.use_bias)
        # One PReLU for every CAB, as officially; only the CABs track it (under "body.1").
        act = keras.layers.PReLU(keras.initializers.Constant(0.25), shared_axes=[1, 2, 3],
                                 name="body.1")

        def shallow_feat(stage):
            return [torch_conv2d(width, kernel_size, 3, use_bias=self.use_bias,
                                 name=f"shallow_feat{stage}.0"),
                    CAB(width, *block_args, act, name=f"shallow_feat{stage}.1")]

        self.shallow_feat1, self.shallow_feat2, self.shallow_feat3 = (
            shallow_feat(1), shallow_feat(2), shallow_feat(3))
        self.stage1_encoder = Encoder(width, *block_args, act, unet_growth, csff=False,
                                      name="stage1_encoder")
        self.stage1_decoder = Decoder(width, *block_args, act, unet_growth,
                                      name="stage1_decoder")
        self.stage2_encoder = Encoder(width, *block_args, act, unet_growth, csff=True,
                                      name="stage2_encoder")
        self.stage2_decoder = Decoder(width, *block_args, act, unet_growth,
                                      name="stage2_decoder")
        self.stage3_orsnet = ORSNet(width, orsnet_growth, *block_args, act, unet_growth,
                                    self.orb_blocks, name="stage3_orsnet")
        self.sam12 = SupervisedAttention(width, heads, 1, self.use_bias, name="sam12")
        self.sam23 = SupervisedAttention(width, heads, 1, self.use_bias, name="sam23")
        self.concat12 = torch_conv2d(width, kernel_size, 2 * width, use_bias=self.use_bias,
                                     name="concat12")
        self.concat23 = torch_conv2d(width + orsnet_growth, kernel_size, 2 * width,
                                     use_bias=self.use_bias, name="concat23")
        self.tail = torch_conv2d(3 * heads, kernel_size, width + orsnet_growth,
                                 use_bias=self.use_bias, name="tail")
        self._build_with_dummy_input()

    def stage_residuals(self, image):
        half_h, half_w = ops.shape(image)[1] // 2, ops.shape(image)[2] // 2
        top, bottom = image[:, :half_h], image[:, half_h:]
        # Parts of the image go through their stage's shared layers as one batch, in the
        # order [top-left, top-right, bottom-left, bottom-right] / [top, bottom]: every layer
        # works per sample, so this equals the official separate calls.
        halves = ops.concatenate([top, bottom], axis=0)
        quadrants = ops.concatenate([top[:, :, :half_w], top[:, :, half_w:],
                                     bottom[:, :, :half_w], bottom[:, :, half_w:]], axis=0)

        # Stage 1: encoder per quadrant, left/right features joined, decoder per half.
        features = self.stage1_encoder(run_blocks(self.shallow_feat1, quadrants))
        encoder1 = []
        for feature in features:
            top_left, top_right, bottom_left, bottom_right = _split_batch(feature, 4)
            encoder1.append(ops.concatenate([
                ops.concatenate([top_left, top_right], axis=2),
                ops.concatenate([bottom_left, bottom_right], axis=2)], axis=0))
        decoder1 = self.stage1_decoder(encoder1)
        sam_features, stage1 = self.sam12(decoder1[0], halves)

        # Stage 2: encoder per half (with CSFF from stage 1), halves joined, one decoder.
        shallow = run_blocks(self.shallow_feat2, halves)
        x = self.concat12(ops.concatenate([shallow, sam_features], axis=-1))
        features = self.stage2_encoder(x, encoder1, decoder1)
        encoder2 = [ops.concatenate(_split_batch(feature, 2), axis=1) for feature in features]
        decoder2 = self.stage2_decoder(encoder2)
        sam_features, stage2 = self.sam23(decoder2[0], image)

        # Stage 3: ORSNet at full resolution with stage 2's features.
        shallow = run_blocks(self.shallow_feat3, image)
        x = self.concat23(ops.concatenate([shallow, sam_features], axis=-1))
        x = self.stage3_orsnet(x, encoder2, decoder2)
        stage1 = ops.concatenate(_split_batch(stage1, 2), axis=1)
        return [self.tail(x), stage2, stage1], x

    def default_loss(self):
        return MinOverHeads("mprnet")

    def get_config(self):
        return {**super().get_config(), "width": self.width, "unet_growth": self.unet_growth,
                "orsnet_growth": self.orsnet_growth, "orb_blocks": self.orb_blocks,
                "kernel_size": self.kernel_size, "reduction": self.reduction,
                "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class MPRNet(SingleHead, MPRNetMH):
    """The official single-head MPRNet (deblurring): output [stage3, stage2, stage1] of
    (B, H, W, 3). Defaults: 20,127,073 parameters. Same arguments as `MPRNetMH` without the
    head options."""
