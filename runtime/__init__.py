"""Deployment bundle -> predictions, with numpy and an inference backend only (never torch)."""
