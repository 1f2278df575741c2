"""Tests of lucid.models (a package so its test_registry.py does not clash with tests/ops/)."""
