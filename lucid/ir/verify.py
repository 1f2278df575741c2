"""Check a graph's well-formedness (written by the IR work)."""


def verify(graph):
    raise NotImplementedError
