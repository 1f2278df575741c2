"""Tiny models for the command line tests (a real ResNet compiles for seconds); every
one takes TINY_INPUT (tiny_pair: 2x3 and 2x4 with --num-classes 4); and the two helpers the
command tests share: `cli` runs a command in process, `one_line_error` checks its stderr."""
import re

import lucid
from lucid.cli import main
from lucid import nn


def tiny_cnn(num_classes=5, width=4, bias=True):
    """Tiny CNN: 1,397 parameters at the defaults (conv 3->4 3x3, linear 256->5)."""
    if num_classes < 1:
        raise lucid.LucidError(f"tiny_cnn: num_classes must be positive, got {num_classes}")
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=bias), nn.ReLU(), nn.Flatten(),
                         nn.Linear(width * 8 * 8, num_classes))


def tiny_pair(num_classes=5):
    """A model with two inputs: 20 parameters."""
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, num_classes)

        def forward(self, x, y):
            return self.fc(x) * y

    return Pair()


def undocumented(**kwargs):
    return nn.Linear(2, 3, **kwargs)


TINY_INPUT = "1x3x8x8"


# ---- running commands ----

def cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err):
    """The error line of stderr: exactly one, the last; any lines before it are the
    progress display's (plain lines, as stderr is no terminal here)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith("lucid"), err
    assert all(re.match(r"(compile|dump|bench) \w+: ", line) for line in lines[:-1]), err
    return lines[-1]
