"""The Hugging Face Hub: where models and tokenizers come from (locations), and publishing a run (push plan,
model card, commit with retries, one error per failure; entry points in hfpipe.hub.api)."""
