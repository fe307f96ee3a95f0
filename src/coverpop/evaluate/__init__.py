"""Stage evaluate: baselines, the test report, Grad-CAM."""
