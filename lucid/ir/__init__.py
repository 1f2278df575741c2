"""lucid's graph IR: types, nodes and graphs, their text form, verification, tracing,
the reference interpreter and autodiff as a graph transformation."""
from .graph import Attrs, Graph, Node
from .types import TensorType
from .printer import format_graph
from .parser import parse
from .verify import verify
from .trace import trace
from .interpreter import Interpreter, interpret
from .autodiff import grad_graph

__all__ = ["Attrs", "Graph", "Node", "TensorType", "format_graph", "parse", "verify", "trace",
           "Interpreter", "interpret", "grad_graph"]
