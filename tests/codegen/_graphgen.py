"""Random lucid programs for differential fuzzing of the native code generator.

A `Program` is a straight-line list of steps over lucid ops on 1-3 inputs. Hypothesis
draws it step by step (`programs()`), and generation runs every step eagerly on the
example's inputs, so each value is known while the program grows. With the values comes
an estimate `err` of how far a correct compiled value may drift from the interpreter's:
reassociated sums, FMA contraction, vectorised math functions and the simplifier's
constant reassociation (`x / c` -> `x * (1/c)`) all change float rounding legitimately.
That estimate is what keeps the comparison both sound and tight:

- ops with jumps (floor, sign, comparisons, argmax, casts to int) are applied only where
  every element is further than 4*err from a jump, so both sides land on the same side;
- the final tolerance of an output grows with its err (and with its magnitude).

The generator leans towards what fusion has to get right: long elementwise chains (the
operand is usually the latest value), values used several times (operands are sometimes
older values, extra outputs are intermediate values), reductions with prologues and
epilogues, matmul / conv with bias, activation and residual epilogues, and injective ops
(reshape, transpose, negative-step slices, pad, concatenate, take, gather) inside chains.
Values stay small and finite by construction (guards such as `log(abs(x) + 0.5)`, clipped
exponents, rescaling by powers of two when a value grows).
"""
import importlib.util
import math

import numpy as np
from hypothesis import strategies as st

import lucid
import lucid.nn.functional as F

U = 2.0 ** -23  # float32 unit round-off (an ulp at 1); float64 values use it too (an overestimate)
HAVE_MATH = importlib.util.find_spec("lucid.codegen.mathlib") is not None
MAX_SIZE = 600  # elements in an input
MAX_VALUE_SIZE = 3000  # elements in any value
BIG_VALUE_SIZE = 60000  # ... of a "big" program (one in ten: kernels past the parallel threshold)
MAX_INT = 2 ** 20  # integer values stay far from int32 overflow
RESCALE_ABOVE = 64.0  # float values larger than this are scaled down by a power of two

# ---- the ops a step may apply ---------------------------------------------------------------

OPS = {}


def op(fmt):
    """Register a step op; `fmt` renders it ({0}, {1}: operands; {name}: parameters)."""

    def deco(fn):
        OPS[fn.__name__] = (fn, fmt)
        return fn

    return deco


@op("-{0}")
def neg(x):
    return lucid.neg(x)


@op("abs({0})")
def abs_(x):
    return lucid.abs(x)


@op("relu({0})")
def relu(x):
    return lucid.relu(x)


@op("sqrt(abs({0}) + 0.1)")
def sqrt_g(x):
    return lucid.sqrt(lucid.abs(x) + 0.1)


@op("{0} * {0}")
def square(x):
    return x * x


@op("exp(clip({0}, -6, 3))")
def exp_g(x):
    return lucid.exp(lucid.clip(x, -6.0, 3.0))


@op("log(abs({0}) + 0.5)")
def log_g(x):
    return lucid.log(lucid.abs(x) + 0.5)


@op("tanh({0})")
def tanh(x):
    return lucid.tanh(x)


@op("sigmoid({0})")
def sigmoid(x):
    return lucid.sigmoid(x)


@op("erf({0})")
def erf(x):
    return lucid.erf(x)


@op("F.gelu({0})")
def gelu(x):
    return F.gelu(x)


@op("sin({0})")
def sin(x):
    return lucid.sin(x)


@op("cos({0})")
def cos(x):
    return lucid.cos(x)


@op("floor({0})")
def floor(x):
    return lucid.floor(x)


@op("ceil({0})")
def ceil(x):
    return lucid.ceil(x)


@op("round({0})")
def round_(x):
    return lucid.round(x)


@op("sign({0})")
def sign(x):
    return lucid.sign(x)


@op("{0} + {1}")
def add(a, b):
    return lucid.add(a, b)


@op("{0} - {1}")
def sub(a, b):
    return lucid.sub(a, b)


@op("{0} * {1}")
def mul(a, b):
    return lucid.mul(a, b)


@op("maximum({0}, {1})")
def maximum(a, b):
    return lucid.maximum(a, b)


@op("minimum({0}, {1})")
def minimum(a, b):
    return lucid.minimum(a, b)


@op("{0} / (abs({1}) + 0.5)")
def div_g(a, b):
    return lucid.div(a, lucid.abs(b) + 0.5)


@op("{0} / {c}")
def div_c(a, c):
    return lucid.div(a, c)


@op("{c} / (abs({0}) + 0.5)")
def rdiv_g(a, c):
    return lucid.div(c, lucid.abs(a) + 0.5)


@op("{c} - {0}")
def rsub_c(a, c):
    return lucid.sub(c, a)


@op("power(abs({0}) + 0.5, clip({1}, -2, 2))")
def pow_g(a, b):
    return lucid.power(lucid.abs(a) + 0.5, lucid.clip(b, -2.0, 2.0))


@op("power(abs({0}) + 0.5, {e})")
def pow_c(a, e):
    return lucid.power(lucid.abs(a) + 0.5, e)


@op("{0} * {s}")
def scale(x, s):
    return x * s


_CMP = {"eq": lucid.equal, "ne": lucid.not_equal, "lt": lucid.less, "le": lucid.less_equal,
        "gt": lucid.greater, "ge": lucid.greater_equal}


@op("{cmp}({0}, {1})")
def compare(a, b, cmp):
    return _CMP[cmp](a, b)


@op("{cmp}({0}, {t})")
def compare_c(a, t, cmp):
    return _CMP[cmp](a, t)


@op("where({0}, {1}, {2})")
def where(c, a, b):
    return lucid.where(c, a, b)


@op("where({0}, {1}, {s})")
def where_c(c, a, s):
    return lucid.where(c, a, s)


@op("logical_and({0}, {1})")
def logical_and(a, b):
    return lucid.logical_and(a, b)


@op("logical_or({0}, {1})")
def logical_or(a, b):
    return lucid.logical_or(a, b)


@op("logical_not({0})")
def logical_not(a):
    return lucid.logical_not(a)


@op("cast({0}, {dtype})")
def cast(x, dtype):
    return lucid.cast(x, dtype)


@op("{0} / (abs({1}) + 1)")
def int_div(a, b):
    return lucid.div(a, lucid.abs(b) + 1)


@op("{fn}({0}, axis={axis}, keepdims={keepdims})")
def reduce(x, fn, axis, keepdims):
    return getattr(lucid, fn)(x, axis=axis, keepdims=keepdims)


@op("cumsum({0}, axis={axis})")
def cumsum(x, axis):
    return lucid.cumsum(x, axis=axis)


@op("reshape({0}, {shape})")
def reshape(x, shape):
    return lucid.reshape(x, shape)


@op("transpose({0}, {perm})")
def transpose(x, perm):
    return lucid.transpose(x, perm)


@op("{0}[{key}]")
def index(x, key):
    return x[_key(key)]


@op("flip({0}, axis={axis})")
def flip(x, axis):
    return lucid.flip(x, axis=axis)


@op("pad({0}, {widths}, value={value})")
def pad(x, widths, value):
    return lucid.pad(x, widths, value=value)


@op("concatenate([{0}, {1}], axis={axis})")
def concat2(a, b, axis):
    return lucid.concatenate([a, b], axis=axis)


@op("concatenate([{0}, {0}, {1}], axis={axis})")
def concat_self(a, b, axis):
    return lucid.concatenate([a, a, b], axis=axis)


@op("broadcast_to({0}, {shape})")
def broadcast_to(x, shape):
    return lucid.broadcast_to(x, shape)


@op("expand_dims({0}, {axis})")
def expand_dims(x, axis):
    return lucid.expand_dims(x, axis)


@op("squeeze({0})")
def squeeze(x):
    return lucid.squeeze(x)


@op("take({0}, {idx}, axis={axis})")
def take_c(x, idx, axis):
    return lucid.take(x, idx, axis=axis)


@op("take({0}, clip({1}, -{n}, {n} - 1), axis={axis})")
def take_v(x, ind, n, axis):
    return lucid.take(x, lucid.clip(ind, -n, n - 1), axis=axis)


@op("gather({0}, {idx}, axis={axis})")
def gather_c(x, idx, axis):
    return lucid.gather(x, idx, axis=axis)


@op("gather({0}, {1}, axis={axis})")
def gather_v(x, ind, axis):
    return lucid.gather(x, ind, axis=axis)


@op("{arg}({0}, axis={axis}, keepdims={keepdims})")
def argext(x, arg, axis, keepdims):
    return getattr(lucid, arg)(x, axis=axis, keepdims=keepdims)


@op("linear({0}, {w}, bias={bias}, relu={act})")
def linear(x, w, bias, act):
    y = lucid.matmul(x, w)
    if bias is not None:
        y = y + bias
    return lucid.relu(y) if act else y


@op("matmul({0}, {1})")
def matmul(a, b):
    return lucid.matmul(a, b)


@op("matmul({0}, transpose({1}))")
def matmul_t(a, b):
    return lucid.matmul(a, lucid.swapaxes(b, -1, -2))


@op("conv2d({0}, {w}, {bias}, stride={stride}, padding={padding}, dilation={dilation}, "
    "groups={groups}) relu={act} residual={res}")
def conv(x, w, bias, stride, padding, dilation, groups, act, res):
    y = F.conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if act:
        y = lucid.relu(y)
    return y + x if res else y


@op("max_pool2d({0}, {k}, stride={stride}, padding={padding}, dilation={dilation}, ceil_mode={ceil})")
def max_pool(x, k, stride, padding, dilation, ceil):
    return F.max_pool2d(x, k, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil)


@op("avg_pool2d({0}, {k}, stride={stride}, padding={padding}, ceil_mode={ceil}, count_include_pad={incl})")
def avg_pool(x, k, stride, padding, ceil, incl):
    return F.avg_pool2d(x, k, stride=stride, padding=padding, ceil_mode=ceil, count_include_pad=incl)


@op("softmax({0}, axis={axis})")
def softmax(x, axis):
    return F.softmax(x, axis=axis)


@op("log_softmax({0}, axis={axis})")
def log_softmax(x, axis):
    return F.log_softmax(x, axis=axis)


@op("layer_norm({0}, {shape}, {w}, {b})")
def layer_norm(x, shape, w, b):
    return F.layer_norm(x, shape, w, b)


def _key(key):
    return tuple(slice(*k) if isinstance(k, tuple) else k for k in key)


MATH_OPS = {"exp_g", "log_g", "tanh", "sigmoid", "erf", "gelu", "softmax", "log_softmax"}


# ---- values and programs ----------------------------------------------------------------------

def amax(a):
    return float(np.max(np.abs(a))) if a.size else 0.0


class Val:
    """One value of a program: its eager array and error estimate."""

    __slots__ = ("id", "data", "err", "tensor", "const")

    def __init__(self, id_, tensor, err, const=False):
        self.id = id_
        self.tensor = tensor
        self.data = tensor.numpy()
        self.err = float(err)
        self.const = const

    @property
    def shape(self):
        return self.data.shape

    @property
    def kind(self):
        """'f' float32, 'd' float64, 'i' int32/int64, 'b' bool."""
        d = self.data.dtype
        if d == np.float32:
            return "f"
        if d == np.float64:
            return "d"
        return "b" if d == np.bool_ else "i"

    @property
    def is_float(self):
        return self.data.dtype.kind == "f"

    @property
    def scale(self):
        return amax(self.data) if self.data.dtype.kind in "fi" else 1.0


class Program:
    """A straight-line program over lucid ops; `fn(*inputs)` replays it (eager or traced)."""

    def __init__(self, inputs, grad=False):
        self.inputs = inputs
        self.big = max(a.size for a in inputs) > MAX_SIZE
        self.limit = BIG_VALUE_SIZE if self.big else MAX_VALUE_SIZE
        self.vals = [Val(k, lucid.Tensor(a), 0.0) for k, a in enumerate(inputs)]
        self.steps = []  # (op name, operand ids, params)
        self.outputs = []
        self.grad = grad  # the program will be differentiated: kinks need margins too
        self.cotangents = []  # per output: the seed of its gradient (None: not differentiated)

    # ---- building --------------------------------------------------------------------------
    def emit(self, name, args, params, err_fn, check=None, kinks=()):
        """Apply op `name` eagerly; keep it if its value is sane. The new Val, or None.

        `err_fn(data)` gives the new value's error estimate from its eager array;
        `check(data)` may refuse the value (e.g. a jump too close to an inexact input).
        `kinks` lists (distance to a kink, error estimate) pairs: where the derivative
        jumps (relu at 0, maximum at a == b, the guards' abs and clip), which matters
        only when the program is differentiated."""
        if self.grad and not all(safe(gap_margin(np.asarray(d)), e) for d, e in kinks):
            return None
        fn = OPS[name][0]
        try:
            with np.errstate(all="ignore"):
                t = fn(*[self.vals[i].tensor for i in args], **_as_tensors(params))
        except (lucid.LucidError, TypeError):  # numpy's TypeErrors: see the report on bool ops
            return None
        data = t.numpy()
        if data.size > self.limit or data.size == 0:
            return None
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            return None
        if data.dtype.kind == "i" and amax(data) > MAX_INT:
            return None
        if check is not None and not check(data):
            return None
        err = err_fn(data) if data.dtype.kind == "f" else 0.0
        if not math.isfinite(err):
            return None
        v = Val(len(self.vals), t, err)
        self.vals.append(v)
        self.steps.append((name, tuple(args), params))
        if v.is_float and v.scale > RESCALE_ABOVE:  # keep magnitudes small: scale by 2^-k (exact)
            s = 2.0 ** -math.ceil(math.log2(v.scale / 8.0))
            v2 = self.emit("scale", [v.id], {"s": s}, lambda d: v.err * s + U * amax(d))
            return v2 if v2 is not None else v
        return v

    def constant(self, array):
        """A constant array as a value of its own (captured as a param when traced)."""
        arr = np.asarray(array)
        v = Val(len(self.vals), lucid.Tensor(arr), 0.0, const=True)
        self.vals.append(v)
        self.steps.append(("const", (), {"value": arr}))
        return v

    # ---- replaying ---------------------------------------------------------------------------
    def fn(self, *xs):
        env = list(xs)
        for name, args, params in self.steps:
            if name == "const":
                env.append(lucid.Tensor(params["value"]))
            else:
                env.append(OPS[name][0](*[env[i] for i in args], **_as_tensors(params)))
        return tuple(env[i] for i in self.outputs)

    def tolerance(self, k):
        """(rtol, atol) for output `k` (float outputs)."""
        v = self.vals[self.outputs[k]]
        return 1e-4, 1e-5 * max(1.0, v.scale) + 4.0 * v.err

    def source(self):
        lines = [", ".join(f"v{k}: {_type(a)}" for k, a in enumerate(self.inputs)) + " ->"]
        for k, (name, args, params) in enumerate(self.steps):
            out = len(self.inputs) + k
            if name == "const":
                text = _show(params["value"])
            else:
                text = OPS[name][1].format(*[f"v{a}" for a in args],
                                           **{p: _show(v) for p, v in params.items()})
            lines.append(f"  v{out} = {text}")
        lines.append("  return " + ", ".join(f"v{o}" for o in self.outputs))
        errs = ", ".join(f"v{o}~{self.vals[o].err:.2g}" for o in self.outputs if self.vals[o].is_float)
        if errs:
            lines.append(f"  # error estimates: {errs}")
        return "\n".join(lines)

    __repr__ = source


class Batch:
    """Several independent programs traced as ONE graph (one native compilation)."""

    def __init__(self, programs):
        self.programs = programs
        self.inputs = [a for p in programs for a in p.inputs]
        self.spans = []
        at, out = 0, 0
        for p in programs:
            self.spans.append((p, at, at + len(p.inputs), out, out + len(p.outputs)))
            at += len(p.inputs)
            out += len(p.outputs)

    def fn(self, *xs):
        outs = []
        for p, a, b, _, _ in self.spans:
            outs.extend(p.fn(*xs[a:b]))
        return tuple(outs)

    def loss(self, *xs):
        """The scalar whose gradient is checked: every float output times its seed, summed."""
        total = None
        outs = self.fn(*xs)
        for k, o in enumerate(outs):
            for p, _, _, o0, o1 in self.spans:
                if o0 <= k < o1:
                    cot = p.cotangents[k - o0]
            if cot is not None:
                term = lucid.sum(lucid.cast(o, lucid.float32) * lucid.Tensor(cot))
                total = term if total is None else total + term
        return total if total is not None else lucid.sum(lucid.cast(xs[0], lucid.float32)) * 0.0

    def loss_tolerance(self):
        """atol for `loss`: its terms' magnitudes and error estimates, seed-weighted."""
        scale = err = 0.0
        for p in self.programs:
            for o, cot in zip(p.outputs, p.cotangents):
                if cot is not None:
                    v = p.vals[o]
                    scale += float(np.sum(np.abs(v.data.astype(np.float64) * cot)))
                    err += v.err * float(np.sum(np.abs(np.broadcast_to(cot, v.shape))))
        return 1e-5 * max(1.0, scale) + 4.0 * err

    def tolerance(self, k):
        for p, _, _, o0, o1 in self.spans:
            if o0 <= k < o1:
                return p.tolerance(k - o0)
        raise IndexError(k)

    def source(self):
        return "\n".join(f"program {k}: {p.source()}" for k, p in enumerate(self.programs))

    __repr__ = source


def _as_tensors(params):
    return {k: lucid.Tensor(v) if isinstance(v, np.ndarray) else v for k, v in params.items()}


def _type(a):
    short = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}
    return f"{short[a.dtype.name]}{list(a.shape)}"


def _show(v):
    if isinstance(v, np.ndarray):
        if v.size <= 8:
            return f"const({np.array2string(v, precision=4, separator=',')}, {v.dtype})".replace("\n", "")
        return f"const<{_type(v)}>"
    if isinstance(v, lucid.DType):
        return v.name
    if isinstance(v, str):
        return v
    return repr(v)


# ---- drawing helpers ----------------------------------------------------------------------

def _choose(draw, items):
    """One of `items`, close to uniformly: hypothesis favours small integers, which would
    make the first item of every list several times as likely (it still shrinks to it)."""
    return items[draw(st.integers(0, 2 ** 16 - 1)) % len(items)] if items else None


def pick(draw, p, kinds="f", pred=None, fresh=0.65):
    """An operand: usually the latest fitting value (chains), else any earlier one (multi-use)."""
    cands = [v for v in p.vals if v.kind in kinds and (pred is None or pred(v))]
    if not cands:
        return None
    if draw(st.integers(0, 99)) < 100 * fresh:
        return cands[-1]
    return _choose(draw, cands)


def small_shape(draw, rank, max_dim=7, limit=MAX_SIZE):
    shape = [draw(st.integers(1, max_dim)) for _ in range(rank)]
    while int(np.prod(shape)) > limit:
        shape[int(np.argmax(shape))] -= 1
    return tuple(shape)


def broadcast_partner(draw, shape):
    """A shape that broadcasts against `shape`: leading dims dropped, some dims set to 1."""
    drop = draw(st.integers(0, len(shape)))
    out = list(shape[drop:])
    for k in range(len(out)):
        if draw(st.integers(0, 2)) == 0:
            out[k] = 1
    return tuple(out)


def broadcast_ok(a, b):
    try:
        s = np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return int(np.prod(s)) <= BIG_VALUE_SIZE


def rng_of(draw):
    return np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))


def float_data(rng, shape, style):
    if style == 0:
        a = rng.normal(0.0, 1.5, shape)
    elif style == 1:
        a = rng.uniform(-4.0, 4.0, shape)
    elif style == 2:  # small integers: ties for max/argmax, exact floors
        a = rng.integers(-3, 4, shape).astype(np.float64)
    else:  # quarter steps, some zeros
        a = rng.integers(-12, 13, shape) / 4.0
    return np.asarray(a, dtype=np.float32)


def gap_margin(a, b=None):
    """Smallest distance between `a` and `b` (broadcast) or, with `a` alone, |a|."""
    d = np.abs(a.astype(np.float64) - (0.0 if b is None else b.astype(np.float64)))
    return float(np.min(d)) if d.size else math.inf


def safe(margin, err):
    """Is a jump at distance `margin` safe given the operands' error estimate `err`?"""
    return err == 0.0 or margin > 4.0 * err + 1e-6


# ---- makers: each appends one step (or a few) to the program, or nothing ------------------------

def mk_unary(draw, p):
    x = pick(draw, p, "fd")
    if x is None:
        return None
    names = ["neg", "abs_", "relu", "sqrt_g", "square", "sin", "cos"]
    if HAVE_MATH:
        names += ["exp_g", "log_g", "tanh", "sigmoid", "erf", "gelu"]
    name = _choose(draw, names)
    e, m = x.err, x.scale
    rules = {
        "neg": lambda d: e, "abs_": lambda d: e, "relu": lambda d: e,
        "sqrt_g": lambda d: 1.6 * (e + U * (m + 0.1)) + U * amax(d),
        "square": lambda d: 2 * m * e + e * e + U * amax(d),
        "sin": lambda d: e + 8 * U * max(1.0, m), "cos": lambda d: e + 8 * U * max(1.0, m),
        "exp_g": lambda d: amax(d) * e + 8 * U * amax(d),
        "log_g": lambda d: 2 * (e + U * (m + 0.5)) + 8 * U * max(1.0, amax(d)),
        "tanh": lambda d: e + 8 * U, "sigmoid": lambda d: 0.25 * e + 8 * U, "erf": lambda d: 1.13 * e + 8 * U,
        # |gelu'| <= 1.13; rounding: a few ulps of the result plus of |x| (Phi's absolute error)
        "gelu": lambda d: 1.13 * e + 8 * U * max(1.0, m),
    }
    xd = x.data.astype(np.float64)
    kink = {"abs_": xd, "relu": xd, "sqrt_g": xd, "log_g": xd,
            "exp_g": np.minimum(np.abs(xd + 6), np.abs(xd - 3))}.get(name)
    return p.emit(name, [x.id], {}, rules[name], kinks=[(kink, e)] if kink is not None else ())


def mk_jump(draw, p):
    """floor / ceil / round / sign: only where no element is near a jump (or exactly known)."""
    name = _choose(draw, ["floor", "ceil", "round_", "sign"])
    x = pick(draw, p, "fd", pred=(lambda v: v.err == 0.0) if draw(st.booleans()) else None)
    if x is None:
        return None
    d = x.data.astype(np.float64)
    if name == "sign":
        ok = x.err == 0.0 or gap_margin(d) > 4 * x.err + 1e-6
    elif name == "round_":
        ok = safe(gap_margin(d - np.floor(d), np.array(0.5)), x.err)
    else:
        ok = safe(gap_margin(d - np.round(d)), x.err)
    return p.emit(name, [x.id], {}, lambda r: 0.0) if ok else None


def _partner(draw, p, a, kinds=None):
    """The second operand of a binary op on `a`: a value, a scalar, or a constant array."""
    kinds = kinds or a.kind
    choice = draw(st.integers(0, 3))
    if choice == 0:
        b = pick(draw, p, kinds, pred=lambda v: v is not a and broadcast_ok(a.shape, v.shape), fresh=0.3)
        if b is not None:
            return b
    if choice == 1 or a.kind == "b":
        return a  # the same value twice: x * x, maximum(x, x)
    rng = rng_of(draw)
    if choice == 2:
        if a.kind == "i":
            return int(rng.integers(-3, 4))
        return float(rng.choice([0.5, -1.25, 2.0, 3.0, -0.75, 1.5, 0.1]))
    shape = broadcast_partner(draw, a.shape)
    if a.kind == "i":
        arr = rng.integers(-3, 4, shape).astype(a.data.dtype)
    else:
        arr = rng.uniform(-2, 2, shape).astype(a.data.dtype)
    return p.constant(arr)


def _bin_err(name, a, b, data):
    """Error estimate of a binary op from its operands' estimates and values."""
    ea, eb = a.err, (b.err if isinstance(b, Val) else 0.0)
    ma, mb = a.scale, (b.scale if isinstance(b, Val) else abs(b))
    if name in ("add", "sub"):
        return ea + eb + U * (ma + mb)
    if name == "mul":
        return mb * ea + ma * eb + ea * eb + U * ma * mb
    if name in ("maximum", "minimum"):
        return max(ea, eb)
    raise KeyError(name)


def mk_binary(draw, p):
    a = pick(draw, p, "fdib")
    if a is None:
        return None
    name = _choose(draw, ["add", "sub", "mul", "maximum", "minimum", "div", "pow"])
    if a.kind == "b":  # numpy's bool arithmetic: + is or, * is and
        name = {"sub": "add", "div": "mul", "pow": "maximum"}.get(name, name)
        b = _partner(draw, p, a)
        return p.emit(name, [a.id, b.id], {}, lambda d: 0.0)
    if a.kind == "i":
        name = {"pow": "mul", "div": "int_div"}.get(name, name)
    b = _partner(draw, p, a)
    if a.kind == "i":
        if isinstance(b, float):
            return None
        mb = b.scale if isinstance(b, Val) else abs(b)
        if (a.scale * mb if name == "mul" else 2 * (a.scale + mb)) > MAX_INT:
            return None
        if name == "int_div":
            if not isinstance(b, Val):
                b = p.constant(np.asarray(b, a.data.dtype))
            if not broadcast_ok(a.shape, b.shape):
                return None
            return p.emit("int_div", [a.id, b.id], {}, lambda d: U * amax(d))
        if isinstance(b, Val):
            return p.emit(name, [a.id, b.id], {}, lambda d: 0.0)
        return p.emit(name + "_s", [a.id], {"c": b}, lambda d: 0.0)
    if name in ("add", "sub", "mul", "maximum", "minimum"):
        if not isinstance(b, Val):
            b = p.constant(np.asarray(b, a.data.dtype)) if draw(st.booleans()) else b
        kinks = ()
        if name in ("maximum", "minimum") and b is not a:  # the same value twice ties exactly
            other = b.data if isinstance(b, Val) else b
            kinks = [(a.data.astype(np.float64) - other, a.err + (b.err if isinstance(b, Val) else 0.0))]
        if isinstance(b, Val):
            return p.emit(name, [a.id, b.id], {}, lambda d: _bin_err(name, a, b, d), kinks=kinks)
        if name == "sub" and draw(st.booleans()):
            return p.emit("rsub_c", [a.id], {"c": b}, lambda d: a.err + U * (a.scale + abs(b)))
        return p.emit(name + "_s", [a.id], {"c": b}, lambda d: _bin_err(name, a, b, d), kinks=kinks)
    if name == "div":
        if not isinstance(b, Val):
            if draw(st.booleans()):
                c = float(b) if abs(b) >= 0.5 else 2.0
                return p.emit("div_c", [a.id], {"c": c}, lambda d: (a.err + U * amax(d)) / abs(c) + U * amax(d))
            c = float(b)
            return p.emit("rdiv_g", [a.id], {"c": c},
                          lambda d: 4 * abs(c) * (a.err + U * (a.scale + 0.5)) + 2 * U * amax(d),
                          kinks=[(a.data, a.err)])
        den = np.abs(b.data.astype(np.float64)) + 0.5
        num = a.data.astype(np.float64)
        ed = b.err + U * (b.scale + 0.5)

        def div_err(d):
            return float(np.max(a.err / den + np.abs(num) / den ** 2 * ed)) + 2 * U * amax(d)

        return p.emit("div_g", [a.id, b.id], {}, div_err, kinks=[(b.data, b.err)])
    # pow with a positive base
    base = np.abs(a.data.astype(np.float64)) + 0.5
    eb_base = a.err + U * (a.scale + 0.5)
    if not isinstance(b, Val):
        e = float(_choose(draw, [0.5, 2.0, 3.0, -1.0, 1.5, -0.5, 1.0]))
        return p.emit("pow_c", [a.id], {"e": e},
                      lambda d: float(np.max(np.abs(e * base ** (e - 1)))) * eb_base + 8 * U * amax(d),
                      kinks=[(a.data, a.err)])
    expo = np.clip(b.data.astype(np.float64), -2, 2)

    def pow_err(d):
        r = np.abs(d.astype(np.float64))
        da = np.abs(expo * base ** (expo - 1))
        de = np.abs(np.broadcast_to(r, np.broadcast_shapes(r.shape, base.shape)) * np.log(base))
        return float(np.max(da)) * eb_base + float(np.max(de)) * b.err + 8 * U * amax(d)

    bd = b.data.astype(np.float64)
    return p.emit("pow_g", [a.id, b.id], {}, pow_err,
                  kinks=[(a.data, a.err), (np.minimum(np.abs(bd - 2), np.abs(bd + 2)), b.err)])


def _scalar_ops():
    for name, fn in [("add", lucid.add), ("sub", lucid.sub), ("mul", lucid.mul),
                     ("maximum", lucid.maximum), ("minimum", lucid.minimum)]:
        sym = {"add": "{0} + {c}", "sub": "{0} - {c}", "mul": "{0} * {c}"}.get(name, name + "({0}, {c})")

        def f(a, c, fn=fn):
            return fn(a, c)

        OPS[name + "_s"] = (f, sym)


_scalar_ops()


def mk_compare(draw, p):
    a = pick(draw, p, "fdib")
    if a is None:
        return None
    cmp = _choose(draw, ["lt", "le", "gt", "ge", "eq", "ne"])
    if draw(st.booleans()) or a.kind == "b":
        b = pick(draw, p, a.kind, pred=lambda v: broadcast_ok(a.shape, v.shape), fresh=0.3)
        if b is None:
            return None
        ok = a.err + b.err == 0.0 or (cmp not in ("eq", "ne") and
                                       safe(gap_margin(a.data, b.data), a.err + b.err))
        return p.emit("compare", [a.id, b.id], {"cmp": cmp}, lambda d: 0.0) if ok else None
    # against a threshold: the middle of the widest gap between values when `a` is inexact
    vals = np.unique(a.data.astype(np.float64))
    if a.err == 0.0:
        t = float(_choose(draw, list(vals))) if draw(st.booleans()) else 0.0
    else:
        if vals.size < 2:
            t = float(vals[0]) + (1.0 if draw(st.booleans()) else -1.0)
        else:
            k = int(np.argmax(np.diff(vals)))
            t = float(np.round((vals[k] + vals[k + 1]) / 2, 3))
        if cmp in ("eq", "ne") or not safe(gap_margin(a.data, np.array(t)), a.err):
            return None
    if a.kind == "i":
        t = int(round(t))
    return p.emit("compare_c", [a.id], {"t": t, "cmp": cmp}, lambda d: 0.0)


def mk_where(draw, p):
    c = pick(draw, p, "b")
    if c is None:
        mk_compare(draw, p)
        c = pick(draw, p, "b")
        if c is None:
            return None
    a = pick(draw, p, "fdib", pred=lambda v: broadcast_ok(c.shape, v.shape), fresh=0.5)
    if a is None:
        return None
    if draw(st.booleans()):
        b = pick(draw, p, a.kind, pred=lambda v: broadcast_ok(np.broadcast_shapes(c.shape, a.shape), v.shape))
        if b is not None:
            return p.emit("where", [c.id, a.id, b.id], {}, lambda d: max(a.err, b.err))
    s = {"f": -1.5, "d": 0.25, "i": 7, "b": True}[a.kind]
    return p.emit("where_c", [c.id, a.id], {"s": s}, lambda d: a.err)


def mk_logical(draw, p):
    a = pick(draw, p, "b")
    if a is None:
        return None
    name = _choose(draw, ["logical_not", "logical_and", "logical_or"])
    if name == "logical_not":
        return p.emit(name, [a.id], {}, lambda d: 0.0)
    b = pick(draw, p, "b", pred=lambda v: broadcast_ok(a.shape, v.shape), fresh=0.3)
    return p.emit(name, [a.id, b.id], {}, lambda d: 0.0)


def mk_cast(draw, p):
    x = pick(draw, p, "fdib")
    if x is None:
        return None
    d = x.data
    targets = {"f": ["int32", "int64", "bool", "float64"], "d": ["float32", "int32", "bool"],
               "i": ["float32", "float64", "int32", "int64", "bool"], "b": ["float32", "int32", "int64"]}[x.kind]
    to = _choose(draw, targets)
    if x.is_float and to.startswith("int"):
        dd = d.astype(np.float64)
        if not safe(gap_margin(dd - np.round(dd)), x.err):
            return None
    if x.is_float and to == "bool" and not (x.err == 0.0 or gap_margin(d) > 4 * x.err + 1e-6):
        return None
    if to == str(d.dtype):
        to = {"int32": "int64", "int64": "int32"}.get(to, to)
    err = x.err + U * x.scale if x.is_float else 0.0
    return p.emit("cast", [x.id], {"dtype": getattr(lucid, to if to != "bool" else "bool_")},
                  lambda r: err)


def _axes(draw, ndim):
    if ndim == 0 or draw(st.integers(0, 4)) == 0:
        return None
    k = draw(st.integers(1, ndim))
    axes = sorted(draw(st.permutations(range(ndim)))[:k])
    axes = [a - ndim if draw(st.integers(0, 3)) == 0 else a for a in axes]
    return axes[0] if len(axes) == 1 and draw(st.booleans()) else tuple(axes)


def mk_reduce(draw, p):
    x = pick(draw, p, "fdib")
    if x is None:
        return None
    fns = {"f": ["sum", "max", "min", "mean", "prod"], "d": ["sum", "max", "min", "mean", "prod"],
           "i": ["sum", "max", "min", "prod"], "b": ["sum", "max", "min", "prod"]}[x.kind]
    fn = _choose(draw, fns)
    axis = _axes(draw, x.data.ndim)
    keep = draw(st.booleans())
    ax = None if axis is None else ((axis,) if isinstance(axis, int) else axis)
    n = x.data.size if ax is None else int(np.prod([x.shape[a] for a in ax]))
    m = x.scale
    if x.kind == "i" and fn == "sum" and n * m > MAX_INT:
        return None
    if fn == "prod":
        if n > 8 or (x.kind != "b" and m > 4.0):
            return None
    e = x.err
    sum_abs = amax(np.sum(np.abs(x.data.astype(np.float64)), axis=None if ax is None else tuple(ax))) \
        if x.is_float else 0.0
    rules = {
        "sum": lambda d: n * e + U * (n / 4 + 4) * sum_abs,
        "mean": lambda d: e + U * (n / 4 + 4) * sum_abs / n + U * amax(d),
        "max": lambda d: e, "min": lambda d: e,
        "prod": lambda d: n * max(m, 1.0) ** max(n - 1, 0) * e + (n + 2) * U * max(m, 1.0) ** n,
    }
    kinks = ()
    if fn in ("max", "min") and x.is_float and x.err > 0.0:  # gap between the two extremes
        d = x.data.astype(np.float64)
        d = d.reshape(1, -1) if ax is None else np.moveaxis(d, [a % d.ndim for a in ax], range(-len(ax), 0))
        d = np.sort(d.reshape(d.shape[:d.ndim - (1 if ax is None else len(ax))] + (-1,)), axis=-1)
        if d.shape[-1] > 1:
            gap = d[..., -1] - d[..., -2] if fn == "max" else d[..., 1] - d[..., 0]
            kinks = [(gap, x.err)]
    return p.emit("reduce", [x.id], {"fn": fn, "axis": axis, "keepdims": keep}, rules[fn], kinks=kinks)


def mk_argext(draw, p):
    x = pick(draw, p, "fdib")
    if x is None:
        return None
    arg = _choose(draw, ["argmax", "argmin"])
    nd = x.data.ndim
    axis = None if nd == 0 or draw(st.integers(0, 3)) == 0 else draw(st.integers(-nd, nd - 1))
    keep = draw(st.booleans())
    if x.err > 0.0:
        d = x.data.astype(np.float64)
        d = d.reshape(-1, 1) if axis is None else np.moveaxis(d, axis, -1)
        if d.shape[-1] > 1:
            s = np.sort(d, axis=-1)
            gap = (s[..., -1] - s[..., -2]) if arg == "argmax" else (s[..., 1] - s[..., 0])
            if not float(np.min(gap)) > 4 * x.err + 1e-6:
                return None
    return p.emit("argext", [x.id], {"arg": arg, "axis": axis, "keepdims": keep}, lambda d: 0.0)


def mk_cumsum(draw, p):
    x = pick(draw, p, "fdib", pred=lambda v: v.data.ndim >= 1)
    if x is None:
        return None
    axis = draw(st.integers(-x.data.ndim, x.data.ndim - 1))
    n = x.shape[axis]
    if x.kind == "i" and n * x.scale > MAX_INT:
        return None
    sum_abs = amax(np.sum(np.abs(x.data.astype(np.float64)), axis=axis)) if x.is_float else 0.0
    return p.emit("cumsum", [x.id], {"axis": axis},
                  lambda d: n * x.err + U * (n / 4 + 4) * sum_abs)


def _factor_shape(draw, size):
    """A random shape (rank <= 4) with `size` elements."""
    primes, n, f = [], size, 2
    while n > 1:
        while n % f == 0:
            primes.append(f)
            n //= f
        f += 1
    rank = draw(st.integers(0 if size == 1 else 1, 4))
    if rank == 0:
        return ()
    dims = [1] * rank
    for q in primes:
        dims[draw(st.integers(0, rank - 1))] *= q
    return tuple(dims)


_SHAPE_KINDS = {"reshape": 0, "transpose": 2, "index": 1, "flip": 1, "pad": 1, "concat": 1,
                "broadcast_to": 0, "expand_dims": 0, "squeeze": 1}  # kind -> the rank it needs


def mk_shape(draw, p):
    kind = _choose(draw, list(_SHAPE_KINDS))
    need = _SHAPE_KINDS[kind]
    x = pick(draw, p, "fdib", pred=lambda v: v.data.ndim >= need and (kind != "squeeze" or 1 in v.shape))
    if x is None:
        return None
    nd = x.data.ndim
    keep = lambda d: x.err  # noqa: E731  (injective ops move values, never round them)
    if kind == "reshape":
        return p.emit("reshape", [x.id], {"shape": _factor_shape(draw, x.data.size)}, keep)
    if kind == "transpose" and nd >= 2:
        return p.emit("transpose", [x.id], {"perm": tuple(draw(st.permutations(range(nd))))}, keep)
    if kind == "index" and nd >= 1:
        key = []
        for n in x.shape:
            c = draw(st.integers(0, 4))
            if c == 0:
                key.append((None, None, None))
            elif c == 1 and n > 1:
                key.append(draw(st.integers(-n, n - 1)))  # an integer index drops the axis
            else:
                step = _choose(draw, [1, 2, -1, -2, 3, -3])
                a = draw(st.integers(-n, n - 1))
                b = draw(st.one_of(st.none(), st.integers(-n - 1, n)))
                if len(range(*slice(a, b, step).indices(n))) == 0:
                    b = None
                key.append((a, b, step))
        return p.emit("index", [x.id], {"key": tuple(key)}, keep)
    if kind == "flip" and nd >= 1:
        return p.emit("flip", [x.id], {"axis": _axes(draw, nd)}, keep)
    if kind == "pad" and nd >= 1:
        widths = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
        value = {"f": -1.5, "d": 0.5, "i": 2, "b": 0}[x.kind] if draw(st.booleans()) else 0
        return p.emit("pad", [x.id], {"widths": widths, "value": value}, keep)
    if kind == "concat" and nd >= 1:
        axis = draw(st.integers(-nd, nd - 1))
        ax = axis % nd

        def fits(v):
            return v.kind == x.kind and v.data.ndim == nd and all(
                v.shape[k] == x.shape[k] for k in range(nd) if k != ax)

        y = pick(draw, p, x.kind, pred=fits, fresh=0.3)
        name = "concat_self" if draw(st.booleans()) else "concat2"
        return p.emit(name, [x.id, y.id], {"axis": axis}, lambda d: max(x.err, y.err))
    if kind == "broadcast_to":
        wide = 16 if p.big else 4
        lead = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
        shape = lead + tuple(draw(st.integers(1, wide)) if n == 1 else n for n in x.shape)
        return p.emit("broadcast_to", [x.id], {"shape": shape}, keep)
    if kind == "expand_dims":
        return p.emit("expand_dims", [x.id], {"axis": draw(st.integers(-nd - 1, nd))}, keep)
    if kind == "squeeze" and 1 in x.shape:
        return p.emit("squeeze", [x.id], {}, keep)
    return None


def mk_index(draw, p):
    """take / gather with constant indices or indices computed in the graph."""
    x = pick(draw, p, "fdib", pred=lambda v: v.data.ndim >= 1)
    if x is None:
        return None
    nd = x.data.ndim
    axis = draw(st.integers(-nd, nd - 1))
    n = x.shape[axis]
    rng = rng_of(draw)
    keep = lambda d: x.err  # noqa: E731
    if draw(st.booleans()):  # take
        ind = pick(draw, p, "i", pred=lambda v: v.data.ndim <= 2 and v.data.size <= 12)
        if ind is not None and draw(st.booleans()):
            return p.emit("take_v", [x.id, ind.id], {"n": n, "axis": axis}, keep)
        shape = small_shape(draw, draw(st.integers(0, 2)), max_dim=4)
        idx = rng.integers(-n, n, shape).astype(_choose(draw, [np.int64, np.int32]))
        return p.emit("take_c", [x.id], {"idx": idx, "axis": axis}, keep)
    ax = axis % nd
    m = draw(st.integers(1, 5))
    shape = tuple(m if k == ax else s for k, s in enumerate(x.shape))
    if draw(st.booleans()):  # indices computed in the graph: an argmax with keepdims
        src = pick(draw, p, "fi", pred=lambda v: v.shape == x.shape)
        if src is not None:
            am = mk_argext_at(draw, p, src, ax)
            if am is not None:
                return p.emit("gather_v", [x.id, am.id], {"axis": axis}, keep)
    idx = rng.integers(-n, n, shape).astype(np.int64)
    return p.emit("gather_c", [x.id], {"idx": idx, "axis": axis}, keep)


def mk_argext_at(draw, p, src, axis):
    if src.err > 0.0:
        s = np.sort(np.moveaxis(src.data.astype(np.float64), axis, -1), axis=-1)
        if s.shape[-1] > 1 and not float(np.min(s[..., -1] - s[..., -2])) > 4 * src.err + 1e-6:
            return None
    return p.emit("argext", [src.id], {"arg": "argmax", "axis": axis, "keepdims": True}, lambda d: 0.0)


def mk_matmul(draw, p):
    """x @ W (+ bias, relu), or a product of two values; repeated for chains."""
    out = None
    for _ in range(draw(st.integers(1, 3))):
        x = pick(draw, p, "fd", pred=lambda v: v.data.ndim >= 1, fresh=0.8)
        if x is None:
            return out
        k = x.shape[-1]
        rng = rng_of(draw)
        dt = x.data.dtype
        choice = draw(st.integers(0, 3))
        if choice == 0 and x.data.ndim >= 2:  # value @ value
            y = pick(draw, p, x.kind, pred=lambda v: v.data.ndim >= 2 and v.shape[-1] == k and v is not x)
            if y is not None and broadcast_ok(x.shape[:-2], y.shape[:-2]):
                return p.emit("matmul_t", [x.id, y.id], {},
                              lambda d: k * (x.scale * y.err + y.scale * x.err) + U * (k + 4) * x.scale * y.scale)
        n = draw(st.integers(1, 64 if p.big else 7))
        wshape = (k, n) if draw(st.integers(0, 3)) else (k,)
        if x.data.ndim >= 2 and draw(st.integers(0, 4)) == 0:
            wshape = x.shape[:-2][-1:] + (k, n)  # batched weights
        w = (rng.normal(0, 1.0 / math.sqrt(k), wshape)).astype(dt)
        bias = rng.normal(0, 0.5, wshape[-1:] if len(wshape) > 1 else ()).astype(dt) \
            if draw(st.booleans()) else None
        act = draw(st.booleans())
        mw = amax(w)
        mb = amax(bias) if bias is not None else 0.0
        def lin_err(d):
            return k * mw * x.err + U * (k + 4) * x.scale * mw + U * (amax(d) + mb)

        kinks = ()
        if act and p.grad:
            pre = linear(x.tensor, lucid.Tensor(w), None if bias is None else lucid.Tensor(bias), False).numpy()
            kinks = [(pre, lin_err(pre))]
        out = p.emit("linear", [x.id], {"w": w, "bias": bias, "act": act}, lin_err, kinks=kinks)
        if out is None:
            return None
    return out


def _as_nchw(draw, p):
    x = pick(draw, p, "fd", pred=lambda v: v.data.ndim == 4, fresh=0.8)
    if x is not None:
        return x
    x = pick(draw, p, "fd", pred=lambda v: v.data.ndim in (2, 3))
    if x is None:
        return None
    shape = (1,) * (4 - x.data.ndim) + x.shape
    return p.emit("reshape", [x.id], {"shape": shape}, lambda d: x.err)


def mk_conv(draw, p):
    x = _as_nchw(draw, p)
    if x is None:
        return None
    _, c, h, w_ = x.shape
    groups = _choose(draw, [g for g in range(1, c + 1) if c % g == 0])
    o = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    res = draw(st.booleans())
    if res:  # a shape-preserving conv: residual add
        o, stride, dilation = c, (1, 1), (1, 1)
        kh, kw = _choose(draw, [1, 3]), _choose(draw, [1, 3])
        padding = (kh // 2, kw // 2)
    rng = rng_of(draw)
    fan = (c // groups) * kh * kw
    wt = rng.normal(0, 1.0 / math.sqrt(fan), (o, c // groups, kh, kw)).astype(x.data.dtype)
    bias = rng.normal(0, 0.5, (o,)).astype(x.data.dtype) if draw(st.booleans()) else None
    act = draw(st.booleans())
    mw = amax(wt)

    def err(d):  # K-term dot products (+ bias, + residual)
        return fan * mw * x.err + U * (fan + 4) * x.scale * mw + 2 * U * amax(d) + (x.err if res else 0.0)

    params = {"w": wt, "bias": bias, "stride": stride, "padding": padding, "dilation": dilation,
              "groups": groups, "act": act, "res": res}
    kinks = ()
    if act and p.grad:
        try:
            pre = conv(x.tensor, **_as_tensors({**params, "act": False, "res": False})).numpy()
        except lucid.LucidError:
            return None
        kinks = [(pre, err(pre))]
    return p.emit("conv", [x.id], params, err, kinks=kinks)


def mk_pool(draw, p):
    x = _as_nchw(draw, p)
    if x is None:
        return None
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    ceil = draw(st.booleans())
    if draw(st.booleans()) and not (p.grad and x.err > 0.0):  # (ties in a window decide the gradient)
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        return p.emit("max_pool", [x.id], {"k": k, "stride": stride, "padding": padding, "dilation": dilation,
                                           "ceil": ceil}, lambda d: x.err)
    incl = draw(st.booleans())
    return p.emit("avg_pool", [x.id], {"k": k, "stride": stride, "padding": padding, "ceil": ceil, "incl": incl},
                  lambda d: x.err + U * (k[0] * k[1] + 4) * x.scale)


def mk_norm(draw, p):
    x = pick(draw, p, "fd", pred=lambda v: v.data.ndim >= 1)
    if x is None:
        return None
    nd = x.data.ndim
    name = _choose(draw, ["softmax", "log_softmax", "layer_norm"] if HAVE_MATH else ["layer_norm"])
    if name != "layer_norm":
        axis = draw(st.integers(-nd, nd - 1))
        n = x.shape[axis]
        if name == "softmax":
            return p.emit(name, [x.id], {"axis": axis}, lambda d: 2 * x.err + (n + 16) * U)
        return p.emit(name, [x.id], {"axis": axis},
                      lambda d: 2 * x.err + (n + 16) * U * max(1.0, amax(d)) + 2 * U * x.scale)
    k = draw(st.integers(1, min(nd, 2)))
    shape = x.shape[nd - k:]
    rng = rng_of(draw)
    dt = x.data.dtype
    w = rng.uniform(0.5, 1.5, shape).astype(dt) if draw(st.booleans()) else None
    b = rng.normal(0, 0.5, shape).astype(dt) if draw(st.booleans()) else None
    d = x.data.astype(np.float64)
    axes = tuple(range(nd - k, nd))
    var = np.var(d, axis=axes)
    s = 1.0 / math.sqrt(float(np.min(var)) + 1e-5)
    n = int(np.prod(shape))
    mw = amax(w) if w is not None else 1.0

    def err(r):
        y = np.sqrt(n)
        return mw * (2 * s * (x.err + (n + 2) * U * x.scale) + (n + 16) * U * y) + U * amax(r)

    return p.emit("layer_norm", [x.id], {"shape": shape, "w": w, "b": b}, err)


# Weighted: elementwise makers dominate (long fusable chains).
MAKERS = ([mk_unary] * 6 + [mk_binary] * 7 + [mk_shape] * 6 + [mk_reduce] * 2 + [mk_compare] * 2 +
          [mk_jump] * 2 + [mk_where, mk_cast, mk_logical, mk_argext, mk_cumsum, mk_index, mk_index, mk_matmul,
                           mk_matmul, mk_conv, mk_pool, mk_norm, mk_norm])


# ---- inputs and whole programs ----------------------------------------------------------------

def big_shape(draw):
    """4000-24000 elements: big enough that kernels split their rows over the thread pool."""
    rank = draw(st.integers(1, 3))
    rest = draw(st.integers(4000, 24000))
    dims = []
    for k in range(rank - 1):
        d = draw(st.integers(2, 2 * int(round(rest ** (1.0 / (rank - k))))))
        dims.append(d)
        rest = max(1, rest // d)
    return tuple(dims) + (rest,)


@st.composite
def input_arrays(draw):
    """1-3 inputs of small shapes that mostly broadcast together; float32 with some ints/bools.
    One program in ten is "big": its first input has thousands of elements."""
    rng = rng_of(draw)
    big = draw(st.integers(0, 9)) == 9
    base = big_shape(draw) if big else small_shape(draw, draw(st.integers(0, 4)))
    shapes = [base]
    for _ in range(draw(st.integers(0, 2))):
        c = draw(st.integers(0, 3))
        shapes.append(base if c == 0 else small_shape(draw, draw(st.integers(0, 4))) if c == 1
                      else broadcast_partner(draw, base))
    arrays = []
    for k, s in enumerate(shapes):
        dt = draw(st.integers(0, 9)) if k else 0
        if dt == 8:
            arrays.append(rng.integers(-5, 6, s).astype(_choose(draw, [np.int32, np.int64])))
        elif dt == 9:
            arrays.append(rng.integers(0, 2, s).astype(bool))
        else:
            arrays.append(float_data(rng, s, draw(st.integers(0, 3))))
    return arrays


@st.composite
def programs(draw, max_steps=16, grad=False):
    p = Program(draw(input_arrays()), grad=grad)
    target = draw(st.integers(2, max_steps))
    for _ in range(3 * max_steps):
        if len(p.steps) >= target:
            break
        _choose(draw, MAKERS)(draw, p)
    computed = [v.id for v in p.vals if v.id >= len(p.inputs) and not v.const]
    last = computed[-1] if computed else 0
    extra = [draw(st.integers(0, len(p.vals) - 1)) for _ in range(draw(st.integers(0, 2)))]
    p.outputs = [last] + extra
    if grad:  # seeds for d(sum of outputs * seeds) / d(float inputs and params)
        rng = rng_of(draw)
        p.cotangents = [rng.normal(0, 1, p.vals[o].shape).astype(np.float32) if p.vals[o].is_float else None
                        for o in p.outputs]
    return p


@st.composite
def batches(draw, per_graph=1, max_steps=16, grad=False):
    return Batch([draw(programs(max_steps, grad)) for _ in range(per_graph)])
