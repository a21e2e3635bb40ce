"""The yardsticks a trained model has to beat, scored with hfpipe's own metrics on any split.

    python bench/trivial_baselines.py data/ddtp-en-de.validation.jsonl.gz
    python bench/trivial_baselines.py data/debian-descriptions-summarization.validation.jsonl.gz --lead 8,10,12

Translation: the source copied as the "translation" (BLEU / chrF). Summarization: the first N words of the
document (ROUGE-L / ROUGE-1), which is the baseline the README's summarization results are set against. The file
format is the one recipes read (`{"translation": {...}}` or `document` / `summary` columns); no model, no network.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path


def read_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    parser.add_argument("--text-column", default="document")
    parser.add_argument("--summary-column", default="summary")
    parser.add_argument("--lead", default="10", help="comma-separated word counts for the lead-N baseline")
    args = parser.parse_args()

    from hfpipe.tasks.metrics import compute_summarization_metrics, compute_translation_metrics

    rows = read_rows(args.file)
    if rows and "translation" in rows[0]:
        sources = [r["translation"][args.source_lang] for r in rows]
        references = [r["translation"][args.target_lang] for r in rows]
        m = compute_translation_metrics(sources, references)
        print(f"{args.file.name}: {len(rows)} rows; copy the source: BLEU {m['bleu']:.2f}, chrF {m['chrf']:.1f}")
        return
    documents = [r[args.text_column] for r in rows]
    references = [r[args.summary_column] for r in rows]
    for n in (int(x) for x in args.lead.split(",")):
        m = compute_summarization_metrics([" ".join(d.split()[:n]) for d in documents], references)
        print(f"{args.file.name}: {len(rows)} rows; first {n} words: ROUGE-L {m['rougeL']:.4f}, "
              f"ROUGE-1 {m['rouge1']:.4f}, ROUGE-2 {m['rouge2']:.4f}")


if __name__ == "__main__":
    main()
