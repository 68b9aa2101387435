"""The blue-green cutover benchmark: python -m bench.cutover."""
