"""Measurement: GMACs from token counts (cross-checked by a counter), throughput, peak memory."""
