"""Evaluation: `eval_file`, the metrics it reports, rate-distortion curves and BD-rate, folder sweeps."""
