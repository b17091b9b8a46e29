"""NAFNet's SimpleGate: the activation-free gating that replaces GELU."""

from keras import ops


def simple_gate(x):
    """Splits channels into halves `a`, `b` (first, second) and returns `a * b`:
    (B, H, W, 2C) -> (B, H, W, C)."""
    first, second = ops.split(x, 2, axis=-1)
    return first * second
