"""On-chip SRAMs: the int8 scratchpad and the int32 accumulator, and their memory-port bridge."""
