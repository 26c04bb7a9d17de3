"""Benchmarks that print numbers and write JSON (`python -m iasa_core bench ...`)."""
