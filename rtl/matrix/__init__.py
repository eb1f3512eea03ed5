"""Matrix engine: an int8 weight-stationary systolic array with int32 results."""
