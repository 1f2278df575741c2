"""Native code generation: the LLVM JIT, the native thread pool, and kernel emitters."""
from .llvm import JitModule, asm, jit, llvm_target, load_object, object_code, optimize, optimized_ir
from .runtime import get_num_threads, set_num_threads
