"""A small progress display for long work (compiling, exporting, benchmarking).

On a terminal it redraws one line on stderr: a bar when the fraction done is known, a
spinner otherwise, with the current stage and the elapsed time. When stderr is not a
terminal (a log file, CI, a pipe) it prints one plain line per stage instead, so logs stay
readable and carry the timings. Nothing is written when `enabled=False`.

    with Progress("compile resnet_50") as p:
        p.update("trace", 0.1)
        ...
        p.update("codegen", 0.6)
    # terminal: "compile resnet_50 [#######.....]  60% codegen  3.1s", then a final line

A Progress is also the `progress=` callable of `lucid.export`: `p(stage, fraction)`.
`track(iterable, label)` wraps a loop.
"""
import sys
import threading
import time

_SPINNER = "|/-\\"
_BAR_WIDTH = 24
_REDRAW_EVERY = 0.1  # seconds between terminal redraws of the same stage
_TICK_EVERY = 0.25  # seconds between redraws by the ticker thread while nothing reports


def _is_tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of one piece of work, shown on `stream` (stderr by default).

    `tty` forces the terminal (True) or plain-line (False) style; by default it is the
    stream's `isatty()`. On a terminal a background thread (`tick`, on by default) redraws
    the line a few times a second, so the spinner and the clock move during a long call
    that reports nothing (LLVM compiling a large model: ctypes releases the GIL)."""

    def __init__(self, label, *, stream=None, enabled=True, tty=None, tick=True):
        self.label = str(label)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        self.tty = _is_tty(self.stream) if tty is None else bool(tty)
        self.stage = None
        self.fraction = None
        self.detail = None
        self.start = time.perf_counter()
        self._ticks = 0
        self._last_draw = 0.0
        self._width = 0  # characters of the line currently drawn on the terminal
        self._closed = False
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._ticker = None
        if tick and self.tty and self.enabled:
            self._ticker = threading.Thread(target=self._tick_loop, name="lucid-progress", daemon=True)
            self._ticker.start()

    # ---- the two ways of reporting -----------------------------------------------------
    def update(self, stage=None, fraction=None, detail=None):
        """Report the current stage (a short word or phrase) and/or the fraction done (0..1).
        `detail` ("run 3/10") is shown on a terminal only: plain-line output gets one line
        per stage, however often the detail changes."""
        with self._lock:
            self._update(stage, fraction, detail)

    def _update(self, stage, fraction, detail):
        if self._closed:
            return
        self.detail = None if detail is None else str(detail)
        new_stage = stage is not None and stage != self.stage
        if stage is not None:
            self.stage = str(stage)
        if fraction is not None:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
        self._ticks += 1
        if not self.enabled:
            return
        if self.tty:
            now = time.perf_counter()
            if not self._width or now - self._last_draw >= _REDRAW_EVERY:
                self._last_draw = now
                self._draw(self._line())
        elif new_stage:
            self._write(self._line() + "\n")

    def __call__(self, stage, fraction=None):
        """`progress(stage, fraction)`: the callback form (as `lucid.export` calls it)."""
        self.update(stage, fraction)

    def close(self, message=None):
        """Finish: clear the terminal line and print `message` (with the elapsed time) if given."""
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join(timeout=1.0)
            self._ticker = None
        with self._lock:
            self._close(message)

    def _close(self, message):
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self.tty and self._width:
            self._draw("")
            self._write("\r")
        if message:
            self._write(f"{self.label}: {message} ({self.elapsed:.1f}s)\n")

    @property
    def elapsed(self):
        return time.perf_counter() - self.start

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    # ---- drawing -------------------------------------------------------------------------
    def _tick_loop(self):
        while not self._stop.wait(_TICK_EVERY):
            with self._lock:
                if self._closed or not self.enabled or not self._width:
                    continue  # nothing drawn yet: the first update draws
                self._ticks += 1
                self._last_draw = time.perf_counter()
                self._draw(self._line())

    def _line(self):
        parts = [self.label]
        if self.tty:
            if self.fraction is None:
                parts.append(_SPINNER[self._ticks % len(_SPINNER)])
            else:
                done = int(round(self.fraction * _BAR_WIDTH))
                parts.append("[" + "#" * done + "." * (_BAR_WIDTH - done) + "]")
        if self.fraction is not None:
            percent = 100 * self.fraction
            parts.append(f"{percent:3.0f}%" if self.tty else f"{percent:.0f}%")
        if self.stage:
            parts.append(self.stage)
        if self.detail and self.tty:
            parts.append(self.detail)
        parts.append(f"{self.elapsed:.1f}s")
        return " ".join(parts) if self.tty else f"{parts[0]}: " + " ".join(parts[1:])

    def _draw(self, text):
        pad = max(self._width - len(text), 0)
        self._write("\r" + text + " " * pad)
        self._width = len(text)

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the work
            self.enabled = False


def track(iterable, label, *, total=None, stream=None, enabled=True, tty=None):
    """Yield from `iterable`, showing `label` and how many items are done (of `total`,
    or of `len(iterable)` when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(label, stream=stream, enabled=enabled, tty=tty) as p:
        for k, item in enumerate(iterable):
            p.update(f"{total} items" if total else "running", (k / total) if total else None,
                     detail=f"{k + 1}/{total}" if total else f"{k + 1}")
            yield item
