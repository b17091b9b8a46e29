"""The one parser of image sizes, for the library's arguments and the commands' flags."""


def parse_size(value, what="size", minimum=1):
    """An image size -> (height, width) ints.

    Args:
        value: "HxW" (also "H,W"), one number for a square ("256" or 256), or an (H, W) pair.
        what: the argument's name, for the error message (e.g. "--input-size").
        minimum: the smallest side accepted.
    Raises:
        ValueError: naming `what`, the value and what was expected.
    """
    if isinstance(value, (tuple, list)):
        parts = list(value)
    elif isinstance(value, int):
        parts = [value]
    else:
        parts = str(value).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(part) for part in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < minimum:
        raise ValueError(f"{what}: expected HEIGHTxWIDTH (e.g. 720x1280) or one number for a "
                         f"square, both sides at least {minimum}; got {value!r}")
    return size
