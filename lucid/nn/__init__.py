"""`lucid.nn`: modules, layers, losses, initialisers and the functional API.

`Module` keeps parameters, buffers and submodules by name; the layers take PyTorch's
constructor arguments and parameter names, so a PyTorch user's model code and state
dicts carry over. `lucid.nn.functional` holds the same computations as functions.
"""
from . import functional, init
from .parameter import Parameter
from .module import IncompatibleKeys, Module, RemovableHandle
from .containers import ModuleDict, ModuleList, Sequential
from .layers import (GELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, BatchNorm3d,
                     BCELoss, BCEWithLogitsLoss, Conv2d, ConvTranspose2d, CrossEntropyLoss, Dropout,
                     Embedding, Flatten, GroupNorm, HuberLoss, Identity, L1Loss, LayerNorm, LeakyReLU,
                     Linear, LogSoftmax, MaxPool2d, MSELoss, NLLLoss, ReLU, Sigmoid, SiLU,
                     SmoothL1Loss, Softmax, Tanh, Upsample)
