"""What every layer shares: names and settings, params and their schema, errors, atomic file writes, the process pool, numpy's pins."""
