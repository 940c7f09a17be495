"""The studio: the `studio` command line and the Textual app over curation and training.

The package root imports nothing: `studio --help` and the first screen stay fast. The version is
the package metadata's (`studio --version`; written once, in pyproject.toml).
"""
