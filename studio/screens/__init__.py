"""One module per screen; studio/bindings.py's SCREENS lists them (name, key, module, class)."""
