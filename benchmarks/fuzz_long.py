"""A long differential-fuzzing run of the native code generator (tests/codegen/test_fuzz.py).

    python benchmarks/fuzz_long.py [PROGRAMS] [SEED]

PROGRAMS random programs (default 10000; three are traced into each compiled graph) are
compiled at opt levels 2 and 0 and compared with the interpreter, and a tenth as many
programs' gradients. Without SEED the run is the CI's derandomized sequence, only longer;
with a SEED it explores new examples.
Prints the count and the wall time; exits non-zero with hypothesis's minimised example
on the first mismatch or crash. The same as

    LUCID_FUZZ_EXAMPLES=10000 python -m pytest tests/codegen/test_fuzz.py -q
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    programs = argv[1] if len(argv) > 1 else "10000"
    env = dict(os.environ, LUCID_FUZZ_EXAMPLES=programs)
    if len(argv) > 2:
        env["LUCID_FUZZ_SEED"] = argv[2]
    start = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "pytest", "tests/codegen/test_fuzz.py", "-q", "-x",
                          "-k", "native", "-p", "no:warnings", "--hypothesis-show-statistics"],
                         env=env, cwd=ROOT)
    took = time.perf_counter() - start
    status = "no mismatches, no crashes" if rc == 0 else "FAILED (see above)"
    print(f"fuzz: {programs} programs, seed {env.get('LUCID_FUZZ_SEED', 'derandomized')}: "
          f"{status} in {took:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
