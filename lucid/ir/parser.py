"""Read the IR's text form (what `lucid.ir.printer` writes) back into a `Graph`.

    graph block(%x: f32[1,3]) {
      %w = param : f32[3,3]
      %0 = matmul(%x, %w) : f32[1,3]  # model.py:12
      %1 = sum(%0) {axes=(1,), keepdims=true} : f32[1,1]
      return %1
    }

A small tokenizer and a recursive-descent parser; nothing in the text is evaluated as
Python. Attribute values come back with the types they were printed from (ints stay
ints, `2.0` is a float, tuples are tuples, `f32` is `lucid.float32`). Attributes left out
of the text take the op's defaults. Values named by plain numbers (`%3`) are numbered
values and are renumbered in order when printed; `# file:line` at the end of a line
becomes the node's `loc`. The result is verified, so a type that disagrees with the
op's shape rule is refused, with the line it is on.
"""
import re
from bisect import bisect_right
from collections import namedtuple

import numpy as np

from ..dtypes import ALL as _ALL_DTYPES
from ..errors import LucidError
from .graph import CALL, Attrs, Graph, Node
from .types import TensorType
from .verify import VerifyError, verify


class ParseError(LucidError):
    """Text that is not a valid graph; the message gives the line, the column and what
    was expected there."""


_TOKEN = re.compile(r"""
[ \t\r\f]*                                     # spaces before a token are skipped
(?:
  (?P<comment>\#[^\n]*)
| (?P<newline>\n)
| (?P<value>%[A-Za-z0-9_.]+)
| (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z0-9_.])
| (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
| (?P<string>"(?:[^"\\]|\\.)*")
| (?P<punct>[-(){}\[\],=:])
| (?P<eof>\Z)
| (?P<bad>.)
)""", re.VERBOSE | re.DOTALL)

Token = namedtuple("Token", "kind text pos")

_KEYWORDS = {"true": True, "false": False, "none": None, "inf": float("inf"), "nan": float("nan")}
_DTYPES = {}
for _d in _ALL_DTYPES:
    _DTYPES[_d.short] = _DTYPES[_d.name] = _d
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def _tokenize(text, error):
    """Tokens (kind, text, offset), spaces dropped, ending with an `eof` token."""
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        pos = m.start(kind)
        if kind == "bad":
            if text[pos] == '"':
                raise error(pos, "unterminated string")
            bad = re.match(r"[^\s(){}\[\],=:]+|.", text[pos:], re.DOTALL).group()
            raise error(pos, f"bad token {bad!r}")
        tok = m.group(kind)
        out.append(Token(tok if kind == "punct" else kind, tok, pos))
        if kind == "eof":
            return out
    raise AssertionError("unreachable: the tokenizer always ends with eof")


def _describe(tok):
    if tok.kind == "eof":
        return "the end of the text"
    if tok.kind == "newline":
        return "the end of the line"
    return repr(tok.text)


class _Parser:
    def __init__(self, text):
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.tokens = _tokenize(text, self.error_at)
        self.i = 0
        self.env = {}  # name in the text -> Node
        self.defined_at = {}  # name -> token that defined it
        self.node_token = {}  # Node -> token of its definition (for verify's errors)

    # ---- positions and errors ---------------------------------------------------------
    def position(self, pos):
        line = bisect_right(self.line_starts, pos)
        return line, pos - self.line_starts[line - 1] + 1

    def error_at(self, pos, message):
        line, col = self.position(pos)
        return ParseError(f"line {line}, column {col}: {message}")

    def error(self, tok, message):
        return self.error_at(tok.pos, message)

    # ---- token stream -------------------------------------------------------------------
    def peek(self):
        return self.tokens[self.i]

    def next(self):
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def accept(self, kind):
        if self.peek().kind == kind:
            return self.next()
        return None

    def expect(self, kind, what):
        tok = self.peek()
        if tok.kind != kind:
            raise self.error(tok, f"expected {what}, got {_describe(tok)}")
        return self.next()

    def keyword(self, word, what):
        tok = self.peek()
        if tok.kind != "word" or tok.text != word:
            raise self.error(tok, f"expected {what}, got {_describe(tok)}")
        return self.next()

    def skip_blank(self):
        while self.peek().kind in ("newline", "comment"):
            self.next()

    def end_of_line(self, what):
        """An optional `# comment` (returned, stripped) and then a newline or the end."""
        comment = self.accept("comment")
        tok = self.peek()
        if tok.kind not in ("newline", "eof"):
            raise self.error(tok, f"expected {what}, got {_describe(tok)}")
        self.next()
        text = comment.text[1:].strip() if comment else ""
        return text or None

    # ---- the graph ----------------------------------------------------------------------
    def graph(self):
        self.skip_blank()
        self.keyword("graph", "'graph' at the start of the text")
        name = self.expect("word", "the graph's name").text
        self.expect("(", "'(' after the graph's name")
        inputs = []
        if not self.accept(")"):
            while True:
                tok = self.expect("value", "an input such as %x")
                self.expect(":", f"':' and the type of input {tok.text}")
                node = Node("input", (), Attrs(), self.tensor_type(), name=self.source_name(tok, "input"))
                self.define(tok, node)
                inputs.append(node)
                if self.accept(")"):
                    break
                self.expect(",", "',' or ')' after an input")
        self.expect("{", "'{' after the graph's inputs")
        self.end_of_line("the end of the line after '{'")
        nodes = list(inputs)
        while True:
            self.skip_blank()
            tok = self.peek()
            if tok.kind == "word" and tok.text == "return":
                break
            if tok.kind != "value":
                raise self.error(tok, f"expected a definition such as '%0 = op(...) : f32[2]' or "
                                      f"'return', got {_describe(tok)}")
            nodes.append(self.statement())
        self.next()
        outputs = []
        if self.peek().kind not in ("newline", "comment", "eof", "}"):
            while True:
                outputs.append(self.use(self.expect("value", "a value to return")))
                if not self.accept(","):
                    break
        if not self.peek().kind == "}":
            self.end_of_line("',' or the end of the line after the returned values")
            self.skip_blank()
        updates = []
        while self.peek().kind == "word" and self.peek().text == "update":
            self.next()
            target = self.use(self.expect("value", "the param that 'update' assigns, such as %w"))
            if target.op != "param":
                raise self.error(self.tokens[self.i - 1], "'update' assigns params only")
            self.expect("=", "'=' after the updated param")
            outputs.append(self.use(self.expect("value", "the value the param is updated to")))
            updates.append(target.name)
            if not self.peek().kind == "}":
                self.end_of_line("the end of the line after an update")
                self.skip_blank()
        self.expect("}", "'}' closing the graph")
        self.skip_blank()
        return Graph(name, inputs, nodes, outputs, meta={"updates": updates} if updates else {})

    def module(self):
        """Function graphs, then the main graph (the last one), which may call them."""
        functions = {}
        while True:
            self.env, self.defined_at = {}, {}
            start = self.peek()
            graph = self.graph()
            if graph.name in functions:
                raise self.error(start, f"graph {graph.name} is defined twice")
            if self.peek().kind == "eof":
                graph.functions = functions
                return graph
            functions[graph.name] = graph

    def statement(self):
        tok = self.next()
        self.expect("=", f"'=' after {tok.text}")
        op_tok = self.expect("word", "an op name")
        op = op_tok.text
        if op == "input":
            raise self.error(op_tok, "inputs are declared in the graph's header, not in its body")
        if op == "param":
            name, operands, attrs = self.source_name(tok, "param"), (), Attrs()
        else:
            name = None if tok.text[1:].isdigit() else tok.text[1:]
            schema = self.schema(op_tok)
            self.expect("(", f"'(' and the operands of {op}")
            operands = []
            if not self.accept(")"):
                while True:
                    operands.append(self.use(self.expect("value", f"an operand of {op} such as %0")))
                    if self.accept(")"):
                        break
                    self.expect(",", f"',' or ')' after an operand of {op}")
            given = self.attrs(op, schema) if self.peek().kind == "{" else {}
            attrs = self.bind(op_tok, schema, given)
            operands = tuple(operands)
        self.expect(":", f"':' and the type of {tok.text}")
        type_ = self.tensor_type()
        loc = self.end_of_line(f"the end of the line after the type of {tok.text}")
        node = Node(op, operands, attrs, type_, name=name, loc=loc)
        self.define(tok, node)
        return node

    # ---- names ----------------------------------------------------------------------------
    def source_name(self, tok, kind):
        name = tok.text[1:]
        if name.isdigit():
            raise self.error(tok, f"an {kind} needs a name that is not a plain number "
                                  f"(numbers name computed values), got {tok.text}")
        return name

    def define(self, tok, node):
        name = tok.text[1:]
        if name in self.env:
            line, _ = self.position(self.defined_at[name].pos)
            raise self.error(tok, f"{tok.text} is already defined (on line {line})")
        self.env[name] = node
        self.defined_at[name] = tok
        self.node_token[node] = tok

    def use(self, tok):
        node = self.env.get(tok.text[1:])
        if node is None:
            raise self.error(tok, f"{tok.text} is not defined before this use")
        return node

    # ---- attributes -------------------------------------------------------------------------
    def schema(self, op_tok):
        """The op's attribute schema: name -> default (REQUIRED for none)."""
        from ..ops.registry import REQUIRED, get_op  # the registry imports the IR

        if op_tok.text == "constant":
            return {"value": REQUIRED}
        if op_tok.text == CALL:
            return {"callee": REQUIRED}
        try:
            return get_op(op_tok.text).attr_schema
        except LucidError as err:
            raise self.error(op_tok, str(err)) from None

    def attrs(self, op, schema):
        self.expect("{", "'{'")
        given = {}
        if self.accept("}"):
            return given
        while True:
            key = self.expect("word", f"an attribute name of {op}")
            if key.text not in schema:
                takes = ", ".join(schema) or "no attributes"
                raise self.error(key, f"{op} has no attribute {key.text!r} (it takes {takes})")
            if key.text in given:
                raise self.error(key, f"attribute {key.text} is given twice")
            self.expect("=", f"'=' after attribute {key.text}")
            given[key.text] = self.value()
            if self.accept("}"):
                return given
            self.expect(",", "',' or '}' after an attribute")

    def bind(self, op_tok, schema, given):
        """Defaults filled in, in schema order (the op's `bind_attrs`, with a position)."""
        from ..ops.registry import REQUIRED

        missing = [k for k, d in schema.items() if d is REQUIRED and k not in given]
        if missing:
            raise self.error(op_tok, f"{op_tok.text} needs attribute(s) {', '.join(missing)}")
        return Attrs([(k, given.get(k, d)) for k, d in schema.items()])

    def value(self):
        tok = self.next()
        if tok.kind == "number":
            return _number(tok.text)
        if tok.kind == "-":
            num = self.next()
            if num.pos == tok.pos + 1:
                if num.kind == "number":
                    return -_number(num.text)
                if num.kind == "word" and num.text in ("inf", "nan"):
                    return -_KEYWORDS[num.text]
            raise self.error(num, f"expected a number right after '-', got {_describe(num)}")
        if tok.kind == "word":
            if tok.text in _KEYWORDS:
                return _KEYWORDS[tok.text]
            if tok.text in _DTYPES:
                return _DTYPES[tok.text]
        if tok.kind == "string":
            return self.string_value(tok)
        if tok.kind == "(":
            return self.tuple_value()
        raise self.error(tok, "expected an attribute value (a number, inf, nan, true, false, none, "
                              f"a \"string\", a dtype such as f32, or a (tuple,)), got {_describe(tok)}")

    def tuple_value(self):
        items = []
        if self.accept(")"):
            return ()
        while True:
            items.append(self.value())
            close = self.accept(")")
            if close:
                if len(items) == 1:
                    raise self.error(close, "a one-element tuple is written with a comma: (x,)")
                return tuple(items)
            self.expect(",", "',' or ')' in a tuple")
            if self.accept(")"):
                return tuple(items)

    def string_value(self, tok):
        out, body, k = [], tok.text[1:-1], 0
        while k < len(body):
            c = body[k]
            if c == "\\":
                esc = body[k + 1]
                if esc not in _ESCAPES:
                    raise self.error_at(tok.pos + 1 + k, f"unknown escape '\\{esc}' in a string "
                                                         "(known: \\\\ \\\" \\n \\t \\r)")
                out.append(_ESCAPES[esc])
                k += 2
            else:
                out.append(c)
                k += 1
        return "".join(out)

    # ---- types ------------------------------------------------------------------------------
    def tensor_type(self):
        tok = self.expect("word", "a type such as f32[2,3]")
        dtype = _DTYPES.get(tok.text)
        if dtype is None:
            raise self.error(tok, f"unknown dtype {tok.text!r} (known: "
                                  f"{', '.join(d.short for d in _ALL_DTYPES)})")
        self.expect("[", f"'[' and the shape after {tok.text}")
        dims = []
        if not self.accept("]"):
            while True:
                dim = self.expect("number", "a dimension (a non-negative integer)")
                if not dim.text.isdigit():
                    raise self.error(dim, f"a dimension is a non-negative integer, got {dim.text}")
                dims.append(int(dim.text))
                if self.accept("]"):
                    break
                self.expect(",", "',' or ']' in a shape")
        return TensorType(tuple(dims), dtype)


def _number(text):
    return int(text) if text.isdigit() else float(text)


def parse_value(text):
    """One attribute value in the text form: the inverse of `printer.format_value`."""
    p = _Parser(text)
    value = p.value()
    p.skip_blank()
    p.expect("eof", "the end of the value")
    return value


def parse(text, params=None):
    """The `Graph` that `text` describes, verified; `params` (name -> array) fills
    `graph.params` (params left out are allowed, e.g. for golden tests)."""
    if not isinstance(text, str):
        raise ParseError(f"parse: expected the graph's text as a str, got {type(text).__name__}")
    p = _Parser(text)
    graph = p.module()
    names = {n.name for n in graph.param_nodes}
    extra = sorted(set(params or {}) - names)
    if extra:
        raise ParseError(f"parse: params {extra} are not params of graph {graph.name}")
    graph.params = {n.name: np.asarray(params[n.name]) for n in graph.param_nodes
                    if n.name in (params or {})}
    try:
        verify(graph)
    except VerifyError as err:
        tok = p.node_token.get(err.node)
        if tok is None:
            raise ParseError(str(err)) from err
        raise p.error(tok, str(err)) from err
    return graph
