"""What every stage shares: one-line errors, params, atomic writes, metrics."""
