"""The IR's text form (which `lucid.ir.parse` reads back).

    graph block(%x: f32[1,64,56,56]) {
      %conv.weight = param : f32[64,64,3,3]
      %0 = conv2d(%x, %conv.weight) {stride=(1, 1), padding=(1, 1), ...} : f32[1,64,56,56]
      %1 = relu(%0) : f32[1,64,56,56]
      return %1
    }

Inputs and params keep their names; other values are numbered in order. Every
attribute is printed (defaults included), so the text is the whole node. A graph that
assigns params (optimiser steps, running statistics) ends with `update %name = %value`
lines: those values are extra outputs, written back to the params by whoever runs it.
"""
import math

from ..dtypes import DType


def format_value(v):
    """An attribute value in the text form."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, DType):
        return v.short
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\t", "\\t").replace("\r", "\\r"))
        return f'"{escaped}"'
    if isinstance(v, tuple):
        inner = ", ".join(format_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def format_attrs(attrs):
    return "{" + ", ".join(f"{k}={format_value(v)}" for k, v in attrs) + "}"


def value_names(graph):
    """Map each node to the name it prints under (without the %)."""
    names, k = {}, 0
    for n in graph.nodes:
        if n.name is not None:
            names[n] = n.name
        else:
            names[n] = str(k)
            k += 1
    return names


def format_graph(graph, locs=False):
    parts = [_format_one(f, locs) for f in graph.functions.values()]
    parts.append(_format_one(graph, locs))
    return "\n\n".join(parts)


def _format_one(graph, locs):
    names = value_names(graph)
    args = ", ".join(f"%{names[n]}: {n.type}" for n in graph.inputs)
    lines = [f"graph {graph.name}({args}) {{"]
    for n in graph.nodes:
        if n.op == "input":
            continue
        if n.op == "param":
            line = f"  %{names[n]} = param : {n.type}"
        else:
            operands = ", ".join(f"%{names[i]}" for i in n.inputs)
            attrs = f" {format_attrs(n.attrs)}" if n.attrs else ""
            line = f"  %{names[n]} = {n.op}({operands}){attrs} : {n.type}"
        if locs and n.loc:
            line += f"  # {n.loc}"
        lines.append(line)
    updates = graph.meta.get("updates", ())
    results = graph.outputs[:len(graph.outputs) - len(updates)]
    lines.append("  return " + ", ".join(f"%{names[o]}" for o in results))
    for name, value in zip(updates, graph.outputs[len(results):]):
        lines.append(f"  update %{name} = %{names[value]}")
    lines.append("}")
    return "\n".join(lines)
