"""Measuring a model: metrics, calibration, robustness, Grad-CAM, latency, significance, plots."""
