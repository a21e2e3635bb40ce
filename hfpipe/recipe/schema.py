"""The recipe schema: one typed, frozen model per section.

Every model forbids unknown keys, so a typo is an error (with a "did you mean", see `recipe.loading`) rather than
a silently ignored setting. Cross-field checks name the keys involved. Importing this module must stay cheap:
pydantic only, no torch/transformers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["translation", "summarization"]

# Architectures that can be built from a config (no pretrained weights). The in-house ones live in
# hfpipe/modeling; "encoder-decoder" warm-starts both halves from pretrained encoder checkpoints (bert2bert).
CONFIG_ARCHITECTURES = ("marian", "bart", "mbart", "t5", "hfpipe-transformer", "hfpipe-rnn")
Architecture = Literal["marian", "bart", "mbart", "t5", "hfpipe-transformer", "hfpipe-rnn", "encoder-decoder"]


class Section(BaseModel):
    # No NaN or infinity in any float setting: `learning_rate: .inf` passes `gt=0` and only shows up as a NaN loss
    # after the model, tokenizer and data stages have run.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class DataFiles(Section):
    """Local files per split: jsonl/json/csv/tsv/parquet, optionally gzip-compressed (`.gz`). A split may be a
    list of files (shards, or a sample plus the rest of a corpus): their rows are read in the order listed."""

    train: str | list[str] | None = None
    validation: str | list[str] | None = None
    test: str | list[str] | None = None

    @field_validator("train", "validation", "test")
    @classmethod
    def _non_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list of files: give at least one file, or leave the split out")
        if value == "" or (isinstance(value, list) and any(not v for v in value)):
            raise ValueError("an empty file name: give a path")
        # [x] is x: the same split, the same cache entry, and a resume is not refused for writing it either way.
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    def paths(self, split: str) -> list[str]:
        """The split's files in reading order; [] when the recipe has none for it."""
        value = getattr(self, split)
        return [] if value is None else [value] if isinstance(value, str) else list(value)


class DataConfig(Section):
    """Where the examples come from and which columns hold source and target."""

    files: DataFiles | None = None
    hub_dataset: str | None = Field(None, description="A Hub dataset id, loaded with datasets.load_dataset.")
    hub_config: str | None = None
    hub_revision: str | None = None
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet"] = "auto"

    # translation: either a dict column in the WMT format ({"en": ..., "de": ...}) or two flat columns
    source_lang: str | None = None
    target_lang: str | None = None
    translation_column: str = "translation"
    source_column: str | None = None
    target_column: str | None = None
    # summarization
    text_column: str = "document"
    summary_column: str = "summary"

    source_prefix: str = Field("", description='Prepended to every source, e.g. "translate English to German: " for T5.')
    validation_fraction: float = Field(0.05, gt=0, lt=1, description="Carved off train when there is no validation split.")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="Carved off train when there is no test split.")
    split_seed: int = 42
    max_train_samples: int | None = Field(None, gt=0)
    max_eval_samples: int | None = Field(None, gt=0)
    max_source_length: int = Field(128, gt=0, description="Source tokens; longer sources are truncated.")
    max_target_length: int = Field(128, gt=0, description="Target tokens; longer targets are truncated in training.")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.files is None) == (self.hub_dataset is None):
            raise ValueError("give exactly one of data.files (local files) or data.hub_dataset (a Hub dataset id)")
        if self.files is not None and self.files.train is None:
            raise ValueError("data.files.train is required (validation/test can be carved off it)")
        if (self.source_column is None) != (self.target_column is None):
            raise ValueError("data.source_column and data.target_column go together (flat translation columns)")
        return self


class TokenizerTrainConfig(Section):
    """Train a new tokenizer on the training split with the `tokenizers` library: one vocabulary shared by source
    and target (both sides are in its training text), as tied embeddings need."""

    type: Literal["unigram", "bpe"] = "unigram"
    vocab_size: int = Field(8000, ge=100, le=1_000_000)
    lowercase: bool = False
    max_rows: int | None = Field(200_000, gt=0, description="Rows of the training split used to train it.")


class TokenizerConfig(Section):
    from_: str | None = Field(None, alias="from", description="A local tokenizer folder or a Hub id.")
    train: TokenizerTrainConfig | None = None

    @model_validator(mode="after")
    def _one_way(self) -> TokenizerConfig:
        if self.from_ is not None and self.train is not None:
            raise ValueError("give one of tokenizer.from or tokenizer.train, not both")
        return self


class ModelConfig(Section):
    """A pretrained checkpoint, or an architecture built from a config (with size overrides)."""

    pretrained: str | None = Field(None, description="A local folder or Hub id loaded with AutoModelForSeq2SeqLM.")
    architecture: Architecture | None = None
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="Config overrides, e.g. {d_model: 256, encoder_layers: 3}.")
    encoder: str | None = Field(None, description="encoder-decoder: pretrained encoder (local folder or Hub id).")
    decoder: str | None = Field(None, description="encoder-decoder: pretrained decoder; defaults to the encoder.")
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: Literal["eager", "sdpa", "hfpipe"] | None = Field(
        None, description='"eager", "sdpa" or "hfpipe" (the in-house attention through AttentionInterface).')

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        if self.pretrained is None and self.architecture is None:
            raise ValueError("give model.pretrained (a checkpoint) or model.architecture (build from a config)")
        if self.pretrained is not None and self.architecture is not None:
            raise ValueError("give one of model.pretrained or model.architecture, not both")
        if self.architecture == "encoder-decoder" and self.encoder is None:
            raise ValueError("model.architecture: encoder-decoder needs model.encoder (a pretrained encoder)")
        if self.architecture != "encoder-decoder" and (self.encoder or self.decoder):
            raise ValueError("model.encoder/model.decoder only apply to model.architecture: encoder-decoder")
        return self


# Accelerate's trackers (accelerate.utils.LoggerType), each with the package it needs.
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
                    "trackio": ("trackio",), "comet_ml": ("comet_ml",), "aim": ("aim",), "clearml": ("clearml",),
                    "dvclive": ("dvclive",), "swanlab": ("swanlab",)}
Tracker = Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "aim", "clearml", "dvclive", "swanlab"]


class TrainConfig(Section):
    num_epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; wins over num_epochs.")
    max_minutes: float | None = Field(None, gt=0, description="Stop after this much training time (not reproducible).")
    batch_size: int = Field(32, gt=0, description="Examples per batch (upper bound when batch_tokens is set).")
    batch_tokens: int | None = Field(None, gt=0, description="Pack batches up to this many padded source+target tokens.")
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "inverse_sqrt"] = "linear"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="auto: bf16 on a CUDA GPU that supports it, else no (on every CPU: README, bf16 on a CPU).")
    group_by_length: bool = True
    pad_to_multiple_of: int = Field(
        1, ge=1, le=128, description="Pad each batch's source and target lengths up to a multiple of this: fewer "
        "distinct shapes for the CPU/GPU kernels to build (8 or 16 suit bf16 matrix units); 1 pads to the longest row.")
    eval_every_steps: int | None = Field(None, gt=0, description="Evaluate on validation every N steps.")
    eval_samples: int | None = Field(300, gt=0, description="Validation rows used for evaluation during training.")
    eval_num_beams: int = Field(1, gt=0, description="Beams for evaluation during training (greedy is fastest).")
    metric_for_best: str | None = Field(None, description="Defaults to the task's main metric (bleu / rougeL).")
    early_stopping_patience: int | None = Field(None, gt=0, description="Evaluations without improvement before stopping.")
    keep_checkpoints: int = Field(1, ge=1, description="Most recent checkpoints kept besides the best one.")
    checkpoint_every_steps: int | None = Field(
        None, gt=0, description="Save a resumable checkpoint every N optimizer steps (checkpoints are also saved "
                                "after every evaluation, at the end, and on SIGINT/SIGTERM).")
    checkpoint_every_minutes: float | None = Field(
        2.0, gt=0, description="Save a resumable checkpoint after every N minutes of training (so a killed run "
                               "loses at most that much); null: only by steps, evaluations and at the end.")
    log_every_steps: int = Field(10, gt=0)
    seed: int = 42
    dataloader_workers: int = Field(0, ge=0)
    report_to: list[Tracker] = Field(default_factory=list, description="Experiment trackers, through Accelerate's: "
                                                                       "tensorboard, wandb, mlflow, trackio, ... "
                                                                       "(each needs its package installed).")

    @model_validator(mode="after")
    def _budget(self) -> TrainConfig:
        if self.num_epochs is None and self.max_steps is None and self.max_minutes is None:
            raise ValueError("give a training budget: train.num_epochs, train.max_steps or train.max_minutes")
        if self.early_stopping_patience is not None and self.eval_every_steps is None:
            raise ValueError("train.early_stopping_patience needs train.eval_every_steps")
        return self


class EvaluateConfig(Section):
    splits: list[Literal["train", "validation", "test"]] = Field(default_factory=lambda: ["test"])
    num_beams: int = Field(4, gt=0)
    max_new_tokens: int | None = Field(None, gt=0, description="Default: from the target lengths in the data.")
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = Field(0, ge=0)
    repetition_penalty: float = Field(1.0, gt=0)
    min_length_ratio: float | None = Field(
        None, ge=0, description="Outputs get at least this many tokens per source token: the end token is "
                                "forbidden before (greedy and beam search; saved with the model for `predict`).")
    max_length_ratio: float | None = Field(
        None, gt=0, description="Outputs are cut at this many tokens per source token, plus 5 (and at "
                                "max_new_tokens).")
    batch_size: int = Field(64, gt=0)
    max_samples: int | None = Field(None, gt=0)
    length_buckets: list[int] = Field(default_factory=lambda: [10, 20, 30, 50],
                                      description="Source-length bucket edges in words for per-length metrics.")
    fail_below: dict[str, float] = Field(default_factory=dict,
                                         description="Metric gate for CI: exit 8 if a test metric is below its value.")
    extra_metrics: list[str] = Field(default_factory=list,
                                     description="More metrics, loaded with evaluate.load: a local metric script "
                                                 "(file or folder) or, with HF_HUB_OFFLINE=0, a Hub metric id. "
                                                 "Reported next to the built-in ones.")

    @model_validator(mode="after")
    def _length_ratios(self) -> EvaluateConfig:
        if (self.min_length_ratio is not None and self.max_length_ratio is not None
                and self.min_length_ratio > self.max_length_ratio):
            raise ValueError(f"min_length_ratio ({self.min_length_ratio}) is above max_length_ratio "
                             f"({self.max_length_ratio})")
        return self

    @field_validator("length_buckets")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(v, v[1:])) or any(x <= 0 for x in v):
            raise ValueError(f"length bucket edges must be positive and increasing, got {v}")
        return v


class PushConfig(Section):
    enabled: bool = True
    repo_id: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool | None = Field(None, description="Unset: the Hub's default for the namespace.")
    revision: str | None = None
    create_pr: bool = False
    commit_message: str | None = None
    license: str = "apache-2.0"


class DistributedConfig(Section):
    """Settings for several processes or GPUs. How many processes, and on which machines, comes from the launch:
    `hfpipe run RECIPE --processes N`, `accelerate launch -m hfpipe run RECIPE` or `torchrun -m hfpipe run RECIPE`.
    """

    timeout_minutes: float = Field(30, gt=0, description="How long a process waits for the others in a "
                                                         "collective operation before the run fails (instead of "
                                                         "hanging for ever).")
    find_unused_parameters: bool | None = Field(
        None, description="DDP: allow parameters that get no gradient, at some cost per step. Unset: on for "
                          "model.architecture encoder-decoder (BERT's pooler is never used), off otherwise.")
    accelerate_config: str | None = Field(
        None, description="An `accelerate config` file that `hfpipe run --processes N` launches with (GPU ids, "
                          "several machines). FSDP and DeepSpeed configs are refused.")
    fsdp: dict[str, Any] | None = Field(None, description="Not supported yet (refused): see the README.")
    deepspeed: dict[str, Any] | None = Field(None, description="Not supported yet (refused): see the README.")

    @model_validator(mode="after")
    def _supported(self) -> DistributedConfig:
        for key in ("fsdp", "deepspeed"):
            if getattr(self, key) is not None:
                raise ValueError(f"distributed.{key}: {UNSHARDED_ONLY}")
        return self


# Why sharded training is refused, in one place for the schema, `validate` and the launch check.
UNSHARDED_ONLY = ("FSDP and DeepSpeed are not supported yet: hfpipe saves the best and final weights and "
                  "generates during training from one full copy of the model, which sharded training does not "
                  "keep. Train with data parallelism (the default with several processes or GPUs), which keeps a "
                  "full copy on every device")


class GatesConfig(Section):
    """What must hold before a run's model is published (CI): see `hfpipe.runs.gates` for the forms."""

    checks: list[str] = Field(default_factory=list, description='Gates such as "bleu>=25", "bleu>=baseline+0.5", '
                                                                '"rougeL>=baseline*1.01". All must pass.')
    split: Literal["train", "validation", "test"] | None = Field(
        None, description="The evaluated split the gates read (default: test, else the first evaluated).")
    baseline: str | None = Field(None, description="What baseline gates compare with: a run directory, or a Hub "
                                                   "model hub:NAMESPACE/NAME[@REVISION], re-scored on the same "
                                                   "rows with the same generation settings.")
    baseline_from_card: bool = Field(False, description="Hub baseline: take its model card's model-index numbers "
                                                        "instead of re-scoring it (they may come from other data "
                                                        "or settings).")
    significance: float | None = Field(None, gt=0, lt=1, description="Baseline gates also need a paired "
                                                                     "bootstrap p-value below this (e.g. 0.05).")


class Recipe(Section):
    name: str | None = Field(None, pattern=r"^[\w.-]+$")
    description: str | None = None
    task: Task
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig
    train: TrainConfig
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    push: PushConfig | None = None
    gates: GatesConfig | None = None
    distributed: DistributedConfig | None = None

    @property
    def primary_metric(self) -> str:
        from hfpipe.tasks.metrics import PRIMARY_METRIC

        return self.train.metric_for_best or PRIMARY_METRIC[self.task]
