#!/usr/bin/env bash
# Rebuilds kjv.txt.gz from Debian's bible-kjv packages (the KJV text is in the public domain).
# Usage: data/corpus/make_kjv.sh   (needs apt-get download and dpkg -x; writes data/corpus/kjv.txt.gz)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get download bible-kjv bible-kjv-text >/dev/null
for deb in *.deb; do dpkg -x "$deb" root; done
root/usr/bin/bible -p root/usr/lib -f "Genesis1:1-Revelation22:21" > verses.txt
# "Ge1:1 In the beginning ..." -> one paragraph per chapter, verse references removed
python3 - verses.txt > kjv.txt <<'PY'
import re, sys
chapter, lines, out = None, [], []
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line.rstrip("\n"))
    if not m:
        continue
    key = (m.group(1), m.group(2))
    if key != chapter and lines:
        out.append(" ".join(lines))
        lines = []
    chapter = key
    lines.append(m.group(4).strip())
out.append(" ".join(lines))
sys.stdout.write("\n\n".join(out) + "\n")
PY
gzip -9n < kjv.txt > "$here/kjv.txt.gz"
echo "wrote $here/kjv.txt.gz ($(wc -w < kjv.txt) words)"
