"""Progress that suits a terminal and a log file alike.

On a terminal a bar redraws itself in place (carriage returns); in a log file every redraw
would stay, so there progress is one plain line per interval instead.
"""

import sys
import time


def writes_to_terminal(stream=None):
    """True when `stream` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def fit_verbosity(verbose="auto"):
    """Keras `fit` verbosity: "auto" means the redrawn bar (1) on a terminal and one line per
    epoch (2) otherwise; numbers pass through."""
    if verbose == "auto":
        return 1 if writes_to_terminal() else 2
    return verbose


class RunningMean:
    """Progress over `total` items showing the running mean of a value (e.g. PSNR), so that
    the last thing shown is the mean a summary table will report.

    Terminal: a `keras.utils.Progbar` given the running mean itself (Keras' own averaging
    shows the last value once the bar completes). Elsewhere: a
    line "label: n/total, name mean" at most every `every_seconds`, and always at the end.
    """

    def __init__(self, total, name, label="progress", unit="image", every_seconds=10.0,
                 stream=None):
        self.total, self.name, self.label, self.unit = total, name, label, unit
        self.every_seconds = every_seconds
        self.stream = sys.stdout if stream is None else stream
        self.count, self.sum = 0, 0.0
        self._last_line = time.monotonic()
        self._bar = None
        if writes_to_terminal(self.stream):
            import keras

            self._bar = keras.utils.Progbar(total, unit_name=unit, stateful_metrics=[name])

    @property
    def mean(self):
        return self.sum / self.count if self.count else float("nan")

    def add(self, value):
        self.count += 1
        self.sum += float(value)
        if self._bar is not None:
            self._bar.add(1, values=[(self.name, self.mean)])
            return
        now = time.monotonic()
        if self.count == self.total or now - self._last_line >= self.every_seconds:
            self._last_line = now
            of = f"/{self.total}" if self.total else ""
            print(f"{self.label}: {self.count}{of} {self.unit}s, mean {self.name} "
                  f"{self.mean:.3f}", file=self.stream, flush=True)
