"""hfpipe: fine-tune Hugging Face sequence-to-sequence models from one YAML recipe.

Nothing heavy is imported here: `hfpipe --help` and `hfpipe validate` must stay free of torch/transformers.
"""

__version__ = "0.1.0"
