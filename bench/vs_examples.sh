#!/usr/bin/env bash
# hfpipe's 5-minute default recipes against transformers' example scripts (run_translation.py /
# run_summarization.py, patched for 5.x, from ../shared/anchors) at the same budget, on the same data, in one run.
#
#   bash bench/vs_examples.sh            # ~25 minutes on 2 CPU cores; results in bench/results/vs_examples.md
#
# Both sides train from scratch on the full shared training split (../shared/data) and are scored on the
# full test split with beam 4. The example scripts get the anchors' 5-minute settings (MarianMT 7.7M, batch 32,
# lr 1e-3, 130 translation / 400 summarization steps; ../shared/anchors/README.md); hfpipe runs its shipped
# recipes unchanged except for the data paths.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
SHARED=${SHARED:-$REPO/../shared}
ANCHORS=$SHARED/anchors
WORK=${WORK:-${TMPDIR:-/tmp}/hfpipe-bench}
PY=${PY:-python}
MT_STEPS=${MT_STEPS:-130}
SUM_STEPS=${SUM_STEPS:-400}
mkdir -p "$WORK/data" "$WORK/cwd" "$HERE/results"
export HF_HUB_OFFLINE=1 HFPIPE_CACHE="$WORK/cache" NLTK_DATA="$WORK/nltk_data" TOKENIZERS_PARALLELISM=false

# --- the example scripts' prerequisites (as in ../shared/anchors/run_anchor_bench.sh)
for f in "$SHARED"/data/*.jsonl.gz; do b=$(basename "$f" .jsonl.gz); [ -s "$WORK/data/$b.json" ] || zcat "$f" > "$WORK/data/$b.json"; done
cp -r "$ANCHORS"/offline_metrics/* "$WORK/cwd/"
d="$NLTK_DATA/tokenizers/punkt_tab/english"; mkdir -p "$d"
for f in collocations.tab sent_starters.txt abbrev_types.txt ortho_context.tab; do touch "$d/$f"; done
[ -d "$WORK/models/mt" ] || "$PY" "$ANCHORS/make_tiny_models.py" --data-dir "$SHARED/data" --out "$WORK/models" > "$WORK/make_models.log" 2>&1

timed() { local log=$1; shift; local s=$SECONDS; "$@" > "$log" 2>&1 || { echo "failed: see $log" >&2; exit 1; }; echo $((SECONDS - s)); }

PARTS=${PARTS:-"mt sum"}   # rerun one part: PARTS=sum bash bench/vs_examples.sh (the table reads both)
has() { [[ " $PARTS " == *" $1 "* ]]; }

# --- translation
if has mt; then
rm -rf "$WORK/ex-mt"
t_ex_mt=$( cd "$WORK/cwd" && timed "$WORK/ex-mt.log" "$PY" "$ANCHORS/run_translation.py" --model_name_or_path "$WORK/models/mt" \
  --source_lang en --target_lang de --train_file "$WORK/data/ddtp-en-de.train.json" \
  --validation_file "$WORK/data/ddtp-en-de.validation.json" --test_file "$WORK/data/ddtp-en-de.test.json" \
  --per_device_train_batch_size 32 --per_device_eval_batch_size 32 --max_source_length 128 \
  --do_train --do_predict --predict_with_generate --num_beams 4 --max_steps "$MT_STEPS" --learning_rate 1e-3 \
  --warmup_steps $((MT_STEPS/10)) --report_to none --seed 42 --output_dir "$WORK/ex-mt" )
rm -rf "$WORK/hf-mt"
t_hf_mt=$( timed "$WORK/hf-mt.log" "$PY" -m hfpipe run "$REPO/recipes/translation-en-de.yaml" --run-dir "$WORK/hf-mt" \
  --set data.files.train="$SHARED/data/ddtp-en-de.train.jsonl.gz" \
  --set data.files.validation="$SHARED/data/ddtp-en-de.validation.jsonl.gz" \
  --set data.files.test="$SHARED/data/ddtp-en-de.test.jsonl.gz" )

fi

# --- summarization
if has sum; then
rm -rf "$WORK/ex-sum"
# run_summarization.py refuses to start at all under HF_HUB_OFFLINE=1 (its nltk check): unset it for that script.
t_ex_sum=$( cd "$WORK/cwd" && timed "$WORK/ex-sum.log" env -u HF_HUB_OFFLINE "$PY" "$ANCHORS/run_summarization.py" --model_name_or_path "$WORK/models/sum" \
  --text_column document --summary_column summary \
  --train_file "$WORK/data/debian-descriptions-summarization.train.json" \
  --validation_file "$WORK/data/debian-descriptions-summarization.validation.json" \
  --test_file "$WORK/data/debian-descriptions-summarization.test.json" \
  --per_device_train_batch_size 32 --per_device_eval_batch_size 32 --max_source_length 128 --max_target_length 64 \
  --do_train --do_predict --predict_with_generate --num_beams 4 --max_steps "$SUM_STEPS" --learning_rate 1e-3 \
  --warmup_steps $((SUM_STEPS/10)) --report_to none --seed 42 --output_dir "$WORK/ex-sum" )
rm -rf "$WORK/hf-sum"
t_hf_sum=$( timed "$WORK/hf-sum.log" "$PY" -m hfpipe run "$REPO/recipes/summarization.yaml" --run-dir "$WORK/hf-sum" \
  --set data.files.train="$SHARED/data/debian-descriptions-summarization.train.jsonl.gz" \
  --set data.files.validation="$SHARED/data/debian-descriptions-summarization.validation.jsonl.gz" \
  --set data.files.test="$SHARED/data/debian-descriptions-summarization.test.jsonl.gz" )
echo "$t_ex_sum $t_hf_sum" > "$WORK/sum.seconds"
fi
has mt && echo "$t_ex_mt $t_hf_mt" > "$WORK/mt.seconds"
read -r t_ex_mt t_hf_mt < "$WORK/mt.seconds" || true
read -r t_ex_sum t_hf_sum < "$WORK/sum.seconds" || true

"$PY" - "$WORK" "$t_ex_mt" "$t_hf_mt" "$t_ex_sum" "$t_hf_sum" "$HERE/results/vs_examples.md" <<'PY'
import json, sys
from pathlib import Path
work, t_ex_mt, t_hf_mt, t_ex_sum, t_hf_sum, out = sys.argv[1:]
work = Path(work)
ex_mt = json.loads((work / "ex-mt/predict_results.json").read_text())
ex_sum = json.loads((work / "ex-sum/predict_results.json").read_text())
hf_mt = json.loads((work / "hf-mt/metrics.json").read_text())["splits"]["test"]
hf_sum = json.loads((work / "hf-sum/metrics.json").read_text())["splits"]["test"]
ex_bleu, hf_bleu = ex_mt["predict_bleu"], hf_mt["bleu"]
ex_rl, hf_rl = ex_sum["predict_rougeL"] / 100, hf_sum["rougeL"]
ratio = lambda a, b: f"{a / b:.1f}×" if b else "∞ (baseline 0)"
lines = [
    "| task (full test split, beam 4) | example script | hfpipe | hfpipe / example | wall s (example / hfpipe) |",
    "| --- | --- | --- | --- | --- |",
    f"| translation en→de, test BLEU | {ex_bleu:.2f} | {hf_bleu:.2f} | {ratio(hf_bleu, ex_bleu)} | {t_ex_mt} / {t_hf_mt} |",
    f"| summarization, test ROUGE-L | {ex_rl:.3f} | {hf_rl:.3f} | {ratio(hf_rl, ex_rl)} | {t_ex_sum} / {t_hf_sum} |",
    "",
    "Trivial baselines on the same test splits: copying the source scores BLEU 9.66; the first 10 words of the "
    "document score ROUGE-L 0.262.",
]
Path(out).write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
