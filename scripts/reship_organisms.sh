#!/usr/bin/env bash
# Re-ship the OLMoE organisms after a (re)training run, end to end:
#
#   1. copy the finished runs into models/olmoe-tiny and models/olmoe-tiny-mem (each with its own
#      step-0 twin untrained/) and run `isingmoe card` on them (held-out baselines, weights SHA-256,
#      learning curve: MODEL_CARD.md, train_log.h5, learning_curve.png);
#   2. re-extract the shipped data exactly as data/README.md says (validation documents, windows,
#      1000 requested sequences of 256 tokens): natural, constant and shuffled positions of
#      olmoe-tiny, olmoe-tiny-mem, the untrained twin; switch-tiny and its twin (232 tokens), whose
#      data must name the train_log.h5 that `isingmoe card` rewrote;
#   3. the measurements docs/organisms.md quotes (isingmoe measure ... --compare ..., r <= 32) and
#      the main job (isingmoe fit --model olmoe-tiny -o fits/olmoe-tiny), JSON summaries in $OUT;
#   4. print the numbers of docs/organisms.md (scripts/organisms_numbers.py), also to $OUT/numbers.md.
#
# usage: scripts/reship_organisms.sh [RUNS_DIR]      (default /work/organisms)
#   RUNS_DIR/olmoe-tiny and RUNS_DIR/olmoe-tiny-mem: finished `isingmoe train` outputs (no .partial).
#   PY: the Python with ising-moe's dependencies (default: python); OUT: where the JSON summaries go
#   (default fits/reship). ORGANISMS: the runs to ship (default "olmoe-tiny olmoe-tiny-mem"; with
#   olmoe-tiny alone the mem model and its data stay as they are, and a warning says so).
# Resumable: a step whose JSON summary is in $OUT is skipped; copying a run whose weights differ
# from those in models/ first removes the summaries that depend on that model. The script stops at
# the first error (rerun it after fixing). Delete $OUT to redo everything.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-/work/organisms}
PY=${PY:-python}
OUT=${OUT:-$ROOT/fits/reship}
# this checkout's package, models/ and data/ (not those of another installation)
export PYTHONPATH=$ROOT ISINGMOE_MODELS=$ROOT/models ISINGMOE_DATA=$ROOT/data
cd "$ROOT"
mkdir -p "$OUT"
isingmoe() { nice -n 10 "$PY" -m ising_moe.cli "$@"; }
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }
once() {  # once SUMMARY command...: run unless SUMMARY exists; the summary is written atomically
  local out=$1; shift
  if [ -s "$out" ]; then step "skip (done): $(basename "$out")"; return; fi
  step "$*"
  "$@" > "$out.tmp"
  mv "$out.tmp" "$out"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

ORGANISMS=${ORGANISMS:-"olmoe-tiny olmoe-tiny-mem"}
case " $ORGANISMS " in *" olmoe-tiny "*) ;; *) echo "ORGANISMS must include olmoe-tiny" >&2; exit 2;; esac
MEM=0; case " $ORGANISMS " in *" olmoe-tiny-mem "*) MEM=1;; esac
for m in $ORGANISMS; do
  if [ ! -f "$RUNS/$m/model.safetensors" ] || [ -e "$RUNS/$m.partial" ]; then
    echo "$RUNS/$m is not a finished run (still training? see $RUNS/$m.partial)" >&2
    exit 2
  fi
done

# 1. models and their cards
for m in $ORGANISMS; do
  if [ -f "models/$m/model.safetensors" ] && [ "$(sha "models/$m/model.safetensors")" = "$(sha "$RUNS/$m/model.safetensors")" ]; then
    step "models/$m already holds $RUNS/$m"
    continue
  fi
  step "models/$m <- $RUNS/$m"
  if [ "$m" = olmoe-tiny ]; then
    rm -f "$OUT"/card-olmoe-tiny.json "$OUT"/extract-olmoe-tiny.json "$OUT"/extract-olmoe-tiny.*.json \
          "$OUT"/extract-olmoe-tiny-untrained.json "$OUT"/measure-vs-*.json "$OUT"/fit-olmoe-tiny.json
  else
    rm -f "$OUT"/card-olmoe-tiny-mem.json "$OUT"/extract-olmoe-tiny-mem.json "$OUT"/measure-vs-mem.json
  fi
  rm -rf "models/$m"
  cp -r "$RUNS/$m" "models/$m"
  chmod -R u+rw,go+r "models/$m"
done
for m in $ORGANISMS; do
  once "$OUT/card-$m.json" isingmoe card "models/$m" --threads 1 --json
done
if [ "$MEM" = 1 ] && [ "$(sha models/olmoe-tiny/untrained/model.safetensors)" != "$(sha models/olmoe-tiny-mem/untrained/model.safetensors)" ]; then
  echo "note: the two runs' step-0 twins differ; data/olmoe-tiny-untrained.h5 is olmoe-tiny's" >&2
fi
if [ "$MEM" = 0 ]; then
  echo "WARNING: models/olmoe-tiny-mem, data/olmoe-tiny-mem.h5 and the aux-vs-mem comparison are the OLD mem" \
       "model's (not retrained): say so in docs/organisms.md or leave the comparison out" >&2
fi

# 2. the shipped data (data/README.md)
C="--corpus data/corpus/mixed.jsonl.gz --split validation --packing windows --n-sequences 1000 --batch-size 16 --overwrite"
EXTRACT="olmoe-tiny olmoe-tiny-untrained"; [ "$MEM" = 1 ] && EXTRACT="$EXTRACT olmoe-tiny-mem"
for m in $EXTRACT; do
  once "$OUT/extract-$m.json" isingmoe extract --model $m $C --max-length 256 --json
done
for p in constant shuffled; do
  once "$OUT/extract-olmoe-tiny.$p.json" isingmoe extract --model olmoe-tiny $C --max-length 256 --positions $p --json
done
for m in switch-tiny switch-tiny-untrained; do
  once "$OUT/extract-$m.json" isingmoe extract --model $m $C --max-length 232 --json
done

# 3. measurements quoted in docs/organisms.md, then the main job
M="--max-distance 32 --no-probe --overwrite --json"
for pair in "untrained:data/olmoe-tiny-untrained.h5" "constant:data/olmoe-tiny.positions-constant.h5" \
            "shuffled:data/olmoe-tiny.positions-shuffled.h5" $([ "$MEM" = 1 ] && echo "mem:data/olmoe-tiny-mem.h5"); do
  name=${pair%%:*}; other=${pair#*:}
  once "$OUT/measure-vs-$name.json" isingmoe measure data/olmoe-tiny.h5 --compare "$other" $M \
    -o "$OUT/olmoe-tiny.vs-$name.stats.h5"
done
once "$OUT/fit-olmoe-tiny.json" isingmoe fit --model olmoe-tiny -o fits/olmoe-tiny --overwrite --json

# 4. the numbers of docs/organisms.md
step "numbers"
"$PY" scripts/organisms_numbers.py "$OUT" --fit fits/olmoe-tiny/summary.json | tee "$OUT/numbers.md"
step "done: review git status (models/, data/), rewrite docs/organisms.md from $OUT/numbers.md, commit"
