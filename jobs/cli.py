"""Command-line entry points of this package (filled in by its module owner)."""
