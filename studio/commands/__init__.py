"""One module per `studio` command; `studio.cli` discovers them (modules starting with _ are helpers)."""
