"""The click commands: they parse options and wire the library parts together."""
