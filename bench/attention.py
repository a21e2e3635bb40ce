"""Forward + backward time of hfpipe's MultiHeadAttention (fast path) against torch.nn.MultiheadAttention.

Self-attention at the paper's base sizes (d_model 512, 8 heads), batch 16, 128 positions, float32, with the
same weights in both modules. Each repeat times a few forward + backward passes; the reported time is the minimum
over repeats, after warm-up, and the two modules are measured alternately in the same run so that both see the
same machine load. Goal: ratio <= 1.1.

    python bench/attention.py [--device cpu|cuda] [--repeats 15]

The result is printed and written to bench/results/attention.txt (or --out).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hfpipe.modeling.attention import MultiHeadAttention  # noqa: E402

D_MODEL, HEADS, BATCH, LENGTH = 512, 8, 16, 128


def build(device: str) -> tuple[MultiHeadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model=D_MODEL, num_heads=HEADS).to(device)
    theirs = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True).to(device)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_Q.weight, ours.W_K.weight, ours.W_V.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.W_Q.bias, ours.W_K.bias, ours.W_V.bias]))
        theirs.out_proj.weight.copy_(ours.W_O.weight)
        theirs.out_proj.bias.copy_(ours.W_O.bias)
    return ours, theirs


def step_ours(module: MultiHeadAttention, x: torch.Tensor) -> None:
    output, _ = module(x)
    output.sum().backward()


def step_theirs(module: nn.MultiheadAttention, x: torch.Tensor) -> None:
    output, _ = module(x, x, x, need_weights=False)
    output.sum().backward()


def timed(step, module, x: torch.Tensor, iterations: int, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step(module, x)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=3, help="forward+backward passes per repeat")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "attention.txt")
    args = parser.parse_args()

    ours, theirs = build(args.device)
    x = torch.randn(BATCH, LENGTH, D_MODEL, device=args.device, requires_grad=True)
    with torch.no_grad():  # same numbers before timing anything
        difference = (ours(x)[0] - theirs(x, x, x, need_weights=False)[0]).abs().max().item()

    for _ in range(3):  # warm-up
        step_ours(ours, x)
        step_theirs(theirs, x)
    times_ours, times_theirs = [], []
    for _ in range(args.repeats):  # alternate, so both see the same load
        times_ours.append(timed(step_ours, ours, x, args.iterations, args.device))
        times_theirs.append(timed(step_theirs, theirs, x, args.iterations, args.device))
    best_ours, best_theirs = min(times_ours), min(times_theirs)
    ratio = best_ours / best_theirs

    lines = [
        "bench/attention.py: self-attention forward+backward, hfpipe MultiHeadAttention (fast path) vs "
        "torch.nn.MultiheadAttention",
        f"shape: batch {BATCH}, length {LENGTH}, d_model {D_MODEL}, heads {HEADS}, float32, device {args.device}",
        f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"timing: min over {args.repeats} repeats of {args.iterations} passes each, after 3 warm-up passes",
        f"max |output difference|: {difference:.2e}",
        f"nn.MultiheadAttention: {best_theirs * 1e3:.2f} ms",
        f"hfpipe MultiHeadAttention: {best_ours * 1e3:.2f} ms",
        f"ratio (hfpipe / torch): {ratio:.3f}  (goal <= 1.1: {'met' if ratio <= 1.1 else 'NOT met'})",
    ]
    report = "\n".join(lines)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(report + "\n")
    temporary.replace(args.out)


if __name__ == "__main__":
    main()
