"""Risk models: features, training, evaluation, versioned artifacts and in-worker scoring (see README.md)."""
