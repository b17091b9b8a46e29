"""What the backbones share beyond their layers: running a list of blocks, and accepting
configs saved under constructor-argument names that have since changed."""


def run_blocks(blocks, x):
    """x through each layer of `blocks` in turn (the official `nn.Sequential` of blocks).

    Restormer and MPRNet keep their blocks as lists of layers, one per official module, so that
    saved files and official weight names map block by block. (NAFNet's `NAFBlockStack` stacks
    its blocks' weights instead, for `scan_blocks`; a scan over Restormer's blocks was measured
    slower to train and no faster to compile, see benchmarks/train_step.py.)"""
    for block in blocks:
        x = block(x)
    return x


def renamed_arguments(**renames):
    """Class decorator for a model whose constructor arguments were renamed: its `from_config`
    also takes configs saved under the old names, so that older `.keras` files still load.

    Each keyword maps an old name to its new name, or to a function old value -> {new name:
    value} (one old argument split into several).
    """
    def translate(config):
        config = dict(config)
        for old, new in renames.items():
            if old not in config:
                continue
            value = config.pop(old)
            translated = new(value) if callable(new) else {new: value}
            clashes = sorted(set(translated) & set(config))
            if clashes:
                raise ValueError(f"the config has both {old!r} (renamed) and {clashes}")
            config.update(translated)
        return config

    def decorate(cls):
        def from_config(klass, config, custom_objects=None):
            return super(cls, klass).from_config(translate(config),
                                                 custom_objects=custom_objects)

        cls.from_config = classmethod(from_config)
        return cls

    return decorate
