"""Parse the IR's text form back into a Graph (written by the IR work)."""


def parse(text, params=None):
    raise NotImplementedError
