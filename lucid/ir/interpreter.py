"""Run a graph node by node with each op's numpy reference.

`Interpreter` is the one walk over a graph; subclasses change what a node does by
overriding `run_node` (torch.fx's design). `interpret(graph, *inputs)` returns numpy
arrays in the structure the traced function returned; `Retracer` replays a graph on
tracers, which is how graph-to-graph transformations such as `grad_graph` reuse tracing.
"""
import numpy as np

from ..errors import DTypeError, ShapeError
from ..ops.registry import apply, get_op
from ..tensor import Tensor
from .graph import CALL
from .trace import GraphBuilder, unflatten


def check_inputs(graph, inputs):
    """Check count, shape and dtype of call inputs against the graph's input types."""
    if len(inputs) != len(graph.inputs):
        raise ShapeError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    arrays = []
    for node, x in zip(graph.inputs, inputs):
        arr = x.data if isinstance(x, Tensor) else np.asarray(x)
        if tuple(arr.shape) != node.type.shape:
            raise ShapeError(f"input %{node.name} of {graph.name} expects shape {node.type.shape}, "
                             f"got {tuple(arr.shape)}")
        if arr.dtype != node.type.dtype.np:
            raise DTypeError(f"input %{node.name} of {graph.name} expects dtype {node.type.dtype}, "
                             f"got {arr.dtype}")
        arrays.append(arr)
    return arrays


class Interpreter:
    """Evaluate a graph; override `run_node`, `param` or `constant` to change a step."""

    def __init__(self, graph):
        self.graph = graph

    def param(self, node):
        try:
            return self.graph.params[node.name]
        except KeyError:
            raise ShapeError(f"graph {self.graph.name} has no value for param %{node.name}") from None

    def constant(self, node):
        return np.asarray(node.attrs["value"], dtype=node.type.dtype.np)

    def run_node(self, node, args):
        if node.op == CALL:
            return type(self)(self.graph.functions[node.attrs["callee"]]).run(*args)[0]
        op = get_op(node.op)
        out = np.asarray(op.reference(*args, **dict(node.attrs)))
        if out.dtype != node.type.dtype.np:
            out = out.astype(node.type.dtype.np)
        return out

    def run(self, *inputs):
        env = dict(zip(self.graph.inputs, inputs))
        for node in self.graph.nodes:
            if node.op == "input":
                continue
            if node.op == "param":
                env[node] = self.param(node)
            elif node.op == "constant":
                env[node] = self.constant(node)
            else:
                env[node] = self.run_node(node, [env[i] for i in node.inputs])
        return [env[o] for o in self.graph.outputs]


def interpret(graph, *inputs):
    """Run `graph` on numpy arrays or tensors; outputs come back as numpy arrays."""
    arrays = check_inputs(graph, inputs)
    outs = Interpreter(graph).run(*arrays)
    outs = outs[:len(outs) - len(graph.meta.get("updates", ()))]  # param updates are not results
    spec = graph.meta.get("out_spec")
    if spec is None:
        return outs[0] if len(outs) == 1 else tuple(outs)
    return unflatten(spec, outs)


class Retracer(Interpreter):
    """Replay a graph through `apply` on tracer tensors of a new builder."""

    def __init__(self, graph, builder=None):
        super().__init__(graph)
        self.builder = builder or GraphBuilder(graph.name)
        self._param_tensors = {}

    def param(self, node):
        t = self._param_tensors.get(node.name)
        if t is None:
            value = self.graph.params.get(node.name)
            t = Tensor._wrap(value if value is not None else np.zeros(node.type.shape, node.type.dtype.np))
            self.builder.param_names[id(t)] = node.name
            self._param_tensors[node.name] = t
        return t

    def constant(self, node):
        return Tensor._wrap(super().constant(node))

    def run_node(self, node, args):
        return apply(node.op, *args, **dict(node.attrs))
