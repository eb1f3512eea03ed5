"""A Scoville core: controller, DMA, SRAMs, matrix engine, vector unit."""
