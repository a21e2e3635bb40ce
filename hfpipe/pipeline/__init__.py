"""The stages of the pipeline, one module each, composed by runner.py."""
