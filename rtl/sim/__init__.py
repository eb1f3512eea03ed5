"""Simulation-only hardware: models that stand in for the outside world in chip-level runs."""
