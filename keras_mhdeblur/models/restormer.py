"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image
Restoration", 2022) and its multi-head form.

Follows the official architecture (docs/method.md, "Restormer") layer for layer; layers are named
after the official module paths ("encoder_level1.0.attn.qkv", "down1_2.body.0",
"reduce_chan_level3", ...) so official weights load by name. A 4-level U-Net of transformer blocks,
each made of MDTA (attention across channels, so its cost grows linearly with the number of pixels)
and GDFN (a GELU-gated depthwise feed-forward).
"""

import keras
from keras import ops

from keras_mhdeblur import losses as losses_lib
from keras_mhdeblur.layers import (ChannelLayerNorm, PixelShuffle, PixelUnshuffle, torch_conv2d,
                                   torch_depthwise_conv2d)
from keras_mhdeblur.models.base import MultiHeadRestorationModel, SingleHead
from keras_mhdeblur.models.blocks import renamed_arguments, run_blocks

LAYER_NORM_TYPES = ("WithBias", "BiasFree")


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class BiasFreeLayerNorm(keras.layers.Layer):
    """Restormer's "BiasFree" LayerNorm over channels: x / sqrt(var_c(x) + 1e-5) * weight.

    The variance is taken around the channel mean, but the mean is not subtracted from x, so
    this is neither `LayerNormalization(center=False)` nor RMS scaling. (B, H, W, C) -> same.
    """

    def __init__(self, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.weight = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                      name="weight")
        super().build(input_shape)

    def call(self, x):
        variance = ops.var(x, axis=-1, keepdims=True)
        return x * ops.rsqrt(variance + self.epsilon) * self.weight

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _layer_norm(layer_norm_type, name):
    # Official path "<block>.norm1.body.weight": the norm module wraps its parameters in `body`.
    if layer_norm_type == "BiasFree":
        return BiasFreeLayerNorm(name=f"{name}.body")
    return ChannelLayerNorm(epsilon=1e-5, name=f"{name}.body")


def _l2_normalize_last_axis(x, epsilon=1e-12):
    """x / max(||x||, eps) along the last axis (torch `F.normalize`); the clamp sits under the
    square root so an all-zero row has a finite gradient."""
    squared_norm = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared_norm, epsilon * epsilon))


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class MultiDConvHeadTransposedAttention(keras.layers.Layer):
    """MDTA: attention across channels. (B, H, W, C) -> (B, H, W, C).

    q, k, v = dwconv3x3(conv1x1 C -> 3C) split in thirds; each is viewed per attention head as
    (B, heads, C/heads, H*W) with channel index head * C/heads + c (head-major, as the official
    `rearrange('b (head c) h w -> b head c (h w)')`); q and k are L2-normalised along H*W and the
    (C/heads x C/heads) attention is softmax(q k^T * temperature[head]) over its last axis.

    Args:
        channels: C, divisible by `attention_heads`.
        attention_heads: number of attention heads (not the output heads of the model).
        use_bias: bias in the three convolutions (False in the official config).
    """

    def __init__(self, channels, attention_heads, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        if channels % attention_heads:
            raise ValueError(
                f"{self.name}: {channels} channels cannot be split into {attention_heads} "
                "attention heads; the channels of every level must be divisible by its number "
                "of attention heads.")
        self.channels = channels
        self.attention_heads = attention_heads
        self.use_bias = use_bias
        self.qkv = torch_conv2d(3 * channels, 1, channels, use_bias=use_bias, name="qkv")
        self.qkv_dwconv = torch_depthwise_conv2d(3, use_bias=use_bias, name="qkv_dwconv")
        self.project_out = torch_conv2d(channels, 1, channels, use_bias=use_bias,
                                        name="project_out")

    def build(self, input_shape):
        # (heads, 1, 1) as in the official code: broadcasts over (B, heads, c, c).
        self.temperature = self.add_weight(shape=(self.attention_heads, 1, 1),
                                           initializer="ones", name="temperature")
        super().build(input_shape)

    def call(self, x):
        batch, height, width = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        heads, head_channels = self.attention_heads, self.channels // self.attention_heads

        def per_head(t):  # (B, H, W, C) -> (B, heads, C/heads, H*W)
            t = ops.reshape(t, (batch, height * width, heads, head_channels))
            return ops.transpose(t, (0, 2, 3, 1))

        q, k, v = ops.split(self.qkv_dwconv(self.qkv(x)), 3, axis=-1)
        q = _l2_normalize_last_axis(per_head(q))
        k = _l2_normalize_last_axis(per_head(k))
        attention = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.temperature
        attention = ops.softmax(attention, axis=-1)
        out = ops.matmul(attention, per_head(v))  # (B, heads, C/heads, H*W)
        out = ops.reshape(ops.transpose(out, (0, 3, 1, 2)), (batch, height, width, self.channels))
        return self.project_out(out)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "attention_heads": self.attention_heads, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class GatedDConvFeedForward(keras.layers.Layer):
    """GDFN: conv1x1 C -> 2h, dwconv3x3, GELU(first half) * second half, conv1x1 h -> C, with
    h = int(C * expansion_factor) (exact erf GELU). (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, channels, expansion_factor=2.66, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.expansion_factor = expansion_factor
        self.use_bias = use_bias
        hidden = int(channels * expansion_factor)
        self.project_in = torch_conv2d(2 * hidden, 1, channels, use_bias=use_bias,
                                       name="project_in")
        self.dwconv = torch_depthwise_conv2d(3, use_bias=use_bias, name="dwconv")
        self.project_out = torch_conv2d(channels, 1, hidden, use_bias=use_bias,
                                        name="project_out")

    def build(self, input_shape):
        # The sublayers build on the first call. (Keras' default build would trace the call
        # symbolically first: Restormer's construction took 1.7x as long.)
        super().build(input_shape)

    def call(self, x):
        gate, value = ops.split(self.dwconv(self.project_in(x)), 2, axis=-1)
        return self.project_out(ops.gelu(gate, approximate=False) * value)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "expansion_factor": self.expansion_factor, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class RestormerBlock(keras.layers.Layer):
    """The official `TransformerBlock`: x + MDTA(LN(x)), then + GDFN(LN(x)).
    (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, channels, attention_heads, ffn_expansion_factor=2.66, use_bias=False,
                 layer_norm_type="WithBias", **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.attention_heads = attention_heads
        self.ffn_expansion_factor = ffn_expansion_factor
        self.use_bias = use_bias
        self.layer_norm_type = layer_norm_type
        self.norm1 = _layer_norm(layer_norm_type, "norm1")
        self.attn = MultiDConvHeadTransposedAttention(channels, attention_heads, use_bias,
                                                      name="attn")
        self.norm2 = _layer_norm(layer_norm_type, "norm2")
        self.ffn = GatedDConvFeedForward(channels, ffn_expansion_factor, use_bias, name="ffn")

    def build(self, input_shape):
        super().build(input_shape)  # the sublayers build on the first call (as GDFN's)

    def call(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "attention_heads": self.attention_heads,
                "ffn_expansion_factor": self.ffn_expansion_factor, "use_bias": self.use_bias,
                "layer_norm_type": self.layer_norm_type}


def official_block_counts(num_blocks):
    """The official `num_blocks` (blocks of encoder levels 1-3 and the latent; the decoders
    reuse the encoders' counts) -> our enc_blocks, middle_blocks, dec_blocks."""
    num_blocks = tuple(int(n) for n in num_blocks)
    if len(num_blocks) != 4:
        raise ValueError(f"num_blocks needs 4 entries (3 levels and the latent), got {num_blocks}")
    return dict(enc_blocks=num_blocks[:3], middle_blocks=num_blocks[3],
                dec_blocks=num_blocks[2::-1])


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
@renamed_arguments(dim="width", bias="use_bias", num_refinement_blocks="refinement_blocks",
                   num_blocks=official_block_counts)
class RestormerMH(MultiHeadRestorationModel):
    """Multi-head Restormer (official `MHRestormer`).

    Input (B, H, W, 3) in [0, 1], any H and W (reflect-padded to a multiple of 8 as the official
    test script does, then cropped); output (B, K', H, W, 3) with K' = K(K+1)/2 when
    `combine_heads`, else K. Defaults are the official GoPro config (26,134,420 parameters for
    K = 4). Levels have w, 2w, 4w, latent 8w channels (w = `width`); the level-1 decoder and
    the refinement run at 2w.

    There is no TLC ("Local") variant: Restormer has no global average pooling (MDTA's
    channel attention reads the whole image at any size), so nothing depends on the training
    crop size (the "TLC" section of docs/method.md concerns only NAFNet and HINet).

    Args:
        heads: K, the number of physical output heads.
        combine_heads: also output the average of every pair of heads
            (docs/method.md, "Head combination").
        width: channels of the first level (official `dim`, 48); even (Down halves it).
        enc_blocks: transformer blocks of encoder levels 1-3, (4, 6, 6).
        middle_blocks: blocks of the latent level (8).
        dec_blocks: blocks of the decoders in the order they run, level 3 to level 1 (6, 6, 4);
            the official `num_blocks` (4, 6, 6, 8) sets enc_blocks, middle_blocks and the
            decoders as the encoders mirrored.
        refinement_blocks: blocks after the level-1 decoder (official
            `num_refinement_blocks`, 4).
        attention_heads: attention heads of levels 1-3 and the latent (1, 2, 4, 8); the
            decoders use their level's entry, the refinement the first. Not to be confused
            with the output `heads` (official `heads`).
        ffn_expansion_factor: GDFN hidden width = int(channels * factor) (2.66).
        use_bias: biases in every convolution (official `bias`, False).
        layer_norm_type: "WithBias" (official) or "BiasFree".
        selected_output: the output index chosen on a validation split (used by inference and
            export), or None.
    """

    pad_multiple = 8
    pad_mode = "reflect"
    recipe = "restormer"

    def __init__(self, heads=4, combine_heads=True, width=48, enc_blocks=(4, 6, 6),
                 middle_blocks=8, dec_blocks=(6, 6, 4), refinement_blocks=4,
                 attention_heads=(1, 2, 4, 8), ffn_expansion_factor=2.66, use_bias=False,
                 layer_norm_type="WithBias", single_output=False, selected_output=None,
                 **kwargs):
        super().__init__(heads=heads, combine_heads=combine_heads, single_output=single_output,
                         selected_output=selected_output, **kwargs)
        if not isinstance(width, int) or width < 2 or width % 2:
            raise ValueError(
                f"width must be a positive even integer (Down halves it), got {width!r}")
        if len(enc_blocks) != 3 or len(dec_blocks) != 3 or len(attention_heads) != 4:
            raise ValueError(
                "enc_blocks and dec_blocks need 3 entries (one per level) and attention_heads 4 "
                f"(3 levels and the latent); got {tuple(enc_blocks)}, {tuple(dec_blocks)} and "
                f"{tuple(attention_heads)}")
        if layer_norm_type not in LAYER_NORM_TYPES:
            raise ValueError(
                f"layer_norm_type must be one of {LAYER_NORM_TYPES}, got {layer_norm_type!r}")
        self.width = width
        self.enc_blocks = tuple(int(n) for n in enc_blocks)
        self.middle_blocks = int(middle_blocks)
        self.dec_blocks = tuple(int(n) for n in dec_blocks)
        self.refinement_blocks = int(refinement_blocks)
        self.attention_heads = tuple(int(n) for n in attention_heads)
        self.ffn_expansion_factor = float(ffn_expansion_factor)
        self.use_bias = bool(use_bias)
        self.layer_norm_type = layer_norm_type

        def blocks(prefix, count, channels, attention_heads):
            return [RestormerBlock(channels, attention_heads, self.ffn_expansion_factor,
                                   self.use_bias, layer_norm_type, name=f"{prefix}.{index}")
                    for index in range(count)]

        def conv(filters, kernel_size, in_channels, name):
            return torch_conv2d(filters, kernel_size, in_channels, use_bias=self.use_bias,
                                name=name)

        w, h = width, self.attention_heads
        enc, dec = self.enc_blocks, self.dec_blocks
        self.patch_embed = conv(w, 3, 3, "patch_embed.proj")
        self.encoder_level1 = blocks("encoder_level1", enc[0], w, h[0])
        self.down1_2 = conv(w // 2, 3, w, "down1_2.body.0")
        self.encoder_level2 = blocks("encoder_level2", enc[1], 2 * w, h[1])
        self.down2_3 = conv(w, 3, 2 * w, "down2_3.body.0")
        self.encoder_level3 = blocks("encoder_level3", enc[2], 4 * w, h[2])
        self.down3_4 = conv(2 * w, 3, 4 * w, "down3_4.body.0")
        self.latent = blocks("latent", self.middle_blocks, 8 * w, h[3])
        self.up4_3 = conv(16 * w, 3, 8 * w, "up4_3.body.0")
        self.reduce_chan_level3 = conv(4 * w, 1, 8 * w, "reduce_chan_level3")
        self.decoder_level3 = blocks("decoder_level3", dec[0], 4 * w, h[2])
        self.up3_2 = conv(8 * w, 3, 4 * w, "up3_2.body.0")
        self.reduce_chan_level2 = conv(2 * w, 1, 4 * w, "reduce_chan_level2")
        self.decoder_level2 = blocks("decoder_level2", dec[1], 2 * w, h[1])
        self.up2_1 = conv(4 * w, 3, 2 * w, "up2_1.body.0")
        # Level 1 keeps the concatenated 2w channels: no reduction conv (official).
        self.decoder_level1 = blocks("decoder_level1", dec[2], 2 * w, h[0])
        self.refinement = blocks("refinement", self.refinement_blocks, 2 * w, h[0])
        self.output_conv = conv(3 * heads, 3, 2 * w, "output")
        self.pixel_unshuffle = PixelUnshuffle(2, name="pixel_unshuffle")
        self.pixel_shuffle = PixelShuffle(2, name="pixel_shuffle")
        self._build_with_dummy_input()

    def stage_residuals(self, image):
        enc1 = run_blocks(self.encoder_level1, self.patch_embed(image))
        enc2 = run_blocks(self.encoder_level2, self.pixel_unshuffle(self.down1_2(enc1)))
        enc3 = run_blocks(self.encoder_level3, self.pixel_unshuffle(self.down2_3(enc2)))
        x = run_blocks(self.latent, self.pixel_unshuffle(self.down3_4(enc3)))
        x = ops.concatenate([self.pixel_shuffle(self.up4_3(x)), enc3], axis=-1)
        x = run_blocks(self.decoder_level3, self.reduce_chan_level3(x))
        x = ops.concatenate([self.pixel_shuffle(self.up3_2(x)), enc2], axis=-1)
        x = run_blocks(self.decoder_level2, self.reduce_chan_level2(x))
        x = ops.concatenate([self.pixel_shuffle(self.up2_1(x)), enc1], axis=-1)
        x = run_blocks(self.refinement, run_blocks(self.decoder_level1, x))
        return [self.output_conv(x)], x

    def default_loss(self):
        return losses_lib.MinOverHeads("l1")

    def get_config(self):
        return {**super().get_config(), "width": self.width, "enc_blocks": self.enc_blocks,
                "middle_blocks": self.middle_blocks, "dec_blocks": self.dec_blocks,
                "refinement_blocks": self.refinement_blocks,
                "attention_heads": self.attention_heads,
                "ffn_expansion_factor": self.ffn_expansion_factor, "use_bias": self.use_bias,
                "layer_norm_type": self.layer_norm_type}


@keras.saving.register_keras_serializable(package="keras_mhdeblur")
class Restormer(SingleHead, RestormerMH):
    """The official single-head Restormer: output (B, H, W, 3). Defaults: GoPro config
    (26,126,644 parameters). Same arguments as `RestormerMH` without the head options."""
