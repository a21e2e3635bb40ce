"""The Hugging Face Hub: where models come from, and publishing a run."""
