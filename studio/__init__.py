"""The studio: the `studio` command line and the Textual app over curation and training.

The package root imports nothing: `studio --help` and the first screen stay fast.
"""
__version__ = "0.1.0"
