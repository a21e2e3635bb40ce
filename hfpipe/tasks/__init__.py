"""Task definitions: columns, prefixes, postprocessing and metrics for translation and summarization."""
