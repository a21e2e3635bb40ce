"""The recipe schema and its loader."""
