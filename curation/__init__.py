"""The curation engine: a DuckDB workspace of samples, with import, dedup, quality, augmentation,
review and split export. It never imports textual, studio or training (see design.md)."""
