"""Dataset sources: the registry of known datasets, readers for their layouts, Kaggle download and import."""
