"""The Scoville compiler: checkpoint + chip configuration -> program + DRAM image."""
