"""lucid.optim: optimizers (SGD, Adam, AdamW, RMSprop) and `lr_scheduler`.

Updates are written with lucid ops, so an optimizer step runs eagerly or inside a trace
(see `lucid.optim.optimizer`)."""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer, required
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler", "required"]
