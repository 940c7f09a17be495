"""Named presets: partial YAML configs merged over training.config's defaults (`--preset NAME`)."""
