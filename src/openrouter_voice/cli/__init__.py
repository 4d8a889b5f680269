"""The openrouter-voice command line (typer + rich)."""
