"""DMA engine and the memory path: the generic memory port, its AXI4 master adapter, the engine."""
