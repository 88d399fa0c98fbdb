"""Training, evaluation, label errors and the raw-vs-curated A/B (Keras 3 on TensorFlow)."""
