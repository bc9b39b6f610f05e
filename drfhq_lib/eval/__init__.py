"""Evaluation: metrics (FID, LPIPS, identity), inversion baselines, generator variants,
and the figure helpers every notebook uses."""
