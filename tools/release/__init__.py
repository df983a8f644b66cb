"""Making what a model release ships besides its weights: the ctx coder's prior table."""
