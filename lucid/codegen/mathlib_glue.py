"""How kernels use lucid.codegen.mathlib: calls in the kernel, definitions linked in.

A kernel module only declares `@lucid_exp_f32` and friends; `link_math` links the
definitions from `mathlib.math_ir` into it (as linkonce_odr, so the linker keeps one copy
and the always-inline functions disappear once inlined), ready for the optimiser to inline
and vectorise."""
import re

import llvmlite.binding as llvm

from . import irutil as U
from .elemental import float_suffix

_DECLARED = re.compile(r"declare [^@\n]*@\"?(lucid_[a-z_]+_f(?:32|64))\"?\(")


def call_math(E, name, dtype, x):
    sym = f"lucid_{name}_{float_suffix(dtype)}"
    t = U.value_type(dtype)
    fn = U.intrinsic(E.module, sym, t, [t])
    return E.b.call(fn, [x])


def link_math(text):
    """`text` with the math functions it declares linked in (unchanged if it uses none)."""
    used = set(_DECLARED.findall(text))
    if not used:
        return text
    from .mathlib import math_ir

    dest = llvm.parse_assembly(text)
    for dtype in sorted({u[-3:] for u in used}):
        lib = math_ir(dtype).replace("define internal", "define linkonce_odr")
        src = llvm.parse_assembly(lib)
        src.triple, src.data_layout = dest.triple, dest.data_layout
        dest.link_in(src)
    return str(dest)
