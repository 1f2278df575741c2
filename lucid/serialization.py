"""save/load (written by the optim/serialization work)."""

def save(obj, path):
    raise NotImplementedError


def load(path):
    raise NotImplementedError
