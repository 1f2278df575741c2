"""Fixtures shared by the code generator's tests."""
import pytest

from lucid.codegen import runtime


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run the test with the native thread pool at 1, then 2 threads."""
    before = runtime.get_num_threads()
    runtime.set_num_threads(request.param)
    yield request.param
    runtime.set_num_threads(before)
