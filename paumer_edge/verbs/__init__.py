"""One module per CLI verb; each exposes `run(args) -> exit code`."""
