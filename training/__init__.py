"""The embedded trainer: transformers + peft + trl + bitsandbytes over a split directory.

It never imports duckdb, curation, studio or textual: a GPU box needs only this package and a
split directory. Heavy libraries are imported inside the functions that use them.
"""
