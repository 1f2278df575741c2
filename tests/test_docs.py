"""The documented list of primitives is the registry's."""
from pathlib import Path

from lucid.ops.catalog import markdown


def test_docs_ops_md_is_generated_from_the_registry():
    doc = Path(__file__).resolve().parents[1] / "docs" / "ops.md"
    assert doc.read_text().strip() == markdown().strip(), "regenerate: python -m lucid.ops.catalog > docs/ops.md"
