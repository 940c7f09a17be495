"""Defaults the command line needs at parse time, kept apart from jobs.py (which loads pyarrow
and DuckDB helpers) so `studio --help` and every other command stay fast."""

DEFAULT_N = {"rewrite": 3, "answers": 2, "reverse": 1, "judge": 1}
"""Outputs per sample for each operation: paraphrases, alternative answers, instructions, scores."""
