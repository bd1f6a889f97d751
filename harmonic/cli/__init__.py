"""Command-line entry points the workflow rules run (python -m harmonic.cli.<name>)."""
