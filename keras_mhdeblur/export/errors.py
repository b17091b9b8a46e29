"""The two ways an export fails: it cannot be done as asked, or the file it made disagrees with
the Keras model. Either way nothing is written."""


class ExportError(ValueError):
    """The export cannot be done as asked: says which argument or file is wrong and why."""


class ExportVerificationError(RuntimeError):
    """The exported file disagrees with the Keras model by more than the tolerance, or does not
    run; `report` holds the comparisons made (a `VerificationReport`)."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def check_choice(name, value, choices):
    """Raises ExportError unless `value` is one of `choices`; `name` is the argument's name."""
    if value not in choices:
        raise ExportError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
