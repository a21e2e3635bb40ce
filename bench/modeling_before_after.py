"""hfpipe.modeling now against hfpipe.modeling at an earlier commit, in one process, alternately, so that both
see the same machine load:

* copy attention: forward + backward of the default translation model (d_model 256, 3+3 layers, 4 heads,
  ffn 1024, vocab 8000, copy_attention) on a batch of 48 × 32 target tokens (1,536) from 48 × 32 source tokens,
  with the label-smoothed loss the trainer computes (`token_loss_sum`, log-probabilities read as they are);
* greedy generation of 64 tokens (batch 8, the same model without copy attention), where the attention layers'
  argument checks ran once per layer at every step.

The earlier files are read with `git show REV:hfpipe/modeling/...` into a temporary package. Reported: the median
and the minimum over repeats of each, and the ratios now / before.

    OMP_NUM_THREADS=1 python bench/modeling_before_after.py [--rev bacb559] [--repeats 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = dict(vocab_size=8000, d_model=256, encoder_layers=3, decoder_layers=3, num_heads=4, ffn_dim=1024,
             max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
BATCH, SOURCE, TARGET = 48, 32, 32


def load_before(rev: str, folder: Path):
    """The modeling package as it was at `rev`, imported as `hfpipe_modeling_before`."""
    package = folder / "hfpipe_modeling_before"
    package.mkdir()
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:hfpipe/modeling"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in names:
        text = subprocess.run(["git", "show", f"{rev}:hfpipe/modeling/{name}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module("hfpipe_modeling_before")


def models(package, *, copy_attention: bool, device: str, state=None):
    config = package.build_config("hfpipe-transformer", copy_attention=copy_attention, dropout=0.1, **MODEL)
    modeling = importlib.import_module(f"{package.__name__}.modeling_hfpipe_transformer")
    model = modeling.HfpipeTransformerForConditionalGeneration(config).to(device)
    if state is not None:
        model.load_state_dict(state)
    return model


def time_training(model, batch, token_loss_sum) -> float:
    input_ids, attention_mask, labels = batch
    model.train()
    start = time.perf_counter()
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels)).logits
    loss = token_loss_sum(logits, labels, label_smoothing=0.1, log_probs=True) / labels.numel()
    loss.backward()
    _sync(input_ids.device)
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def time_generation(model, input_ids) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(input_ids, max_new_tokens=64, min_new_tokens=64, do_sample=False, num_beams=1)
    _sync(input_ids.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="bacb559")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import hfpipe.modeling as now
    from hfpipe.pipeline.training import token_loss_sum

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, MODEL["vocab_size"], (BATCH, SOURCE), generator=generator)
    labels = torch.cat([input_ids[:, : TARGET // 2],
                        torch.randint(3, MODEL["vocab_size"], (BATCH, TARGET - TARGET // 2), generator=generator)], 1)
    batch = tuple(t.to(args.device) for t in (input_ids, torch.ones_like(input_ids), labels))
    prompts = input_ids[:8].to(args.device)

    with tempfile.TemporaryDirectory() as folder:
        before = load_before(args.rev, Path(folder))
        results = {}
        for task, copy in (("copy-attention training step", True), ("greedy generation, 64 tokens", False)):
            torch.manual_seed(0)
            new = models(now, copy_attention=copy, device=args.device)
            old = models(before, copy_attention=copy, device=args.device, state=new.state_dict())
            measure = (lambda m: time_training(m, batch, token_loss_sum)) if copy else (
                lambda m: time_generation(m, prompts))
            for model in (old, new):  # warm-up
                measure(model)
            times = {"before": [], "now": []}
            for repeat in range(args.repeats):  # alternating which goes first, so that order favours neither
                pair = [("before", old), ("now", new)]
                for name, model in pair if repeat % 2 == 0 else pair[::-1]:
                    times[name].append(measure(model))
            results[task] = {name: (statistics.median(values), min(values)) for name, values in times.items()}
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} thread(s), rev {args.rev}, "
          f"median of {args.repeats}")
    for task, result in results.items():
        (before, before_min), (now, now_min) = result["before"], result["now"]
        print(f"{task}: median before {before * 1000:.0f} ms, now {now * 1000:.0f} ms, ratio now/before "
              f"{now / before:.3f} (minimum {before_min * 1000:.0f} vs {now_min * 1000:.0f} ms, "
              f"ratio {now_min / before_min:.3f})")


if __name__ == "__main__":
    main()
