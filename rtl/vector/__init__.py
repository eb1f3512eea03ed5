"""The vector unit: the transformer's non-matrix math on C lanes."""
