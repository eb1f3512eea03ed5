"""Network-on-chip: flit format, router, mesh, self-test traffic hardware."""
