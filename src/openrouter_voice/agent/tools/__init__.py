"""Tools of the assistant, framework-free: weather and spoken model names."""
