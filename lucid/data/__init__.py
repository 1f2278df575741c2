"""Data sets for examples and tests: `lucid.data.shapes` generates images of simple
coloured shapes with detection targets or class labels."""
from . import shapes
from .shapes import classification_set, detection_set

__all__ = ["shapes", "classification_set", "detection_set"]
