"""Experiments over runs: the grid (original vs target-only vs Transfer-Prompting), reports and plots."""
