"""Fixtures of the training tests: a small corpus cut from the shipped one."""

import gzip
import json

import pytest
from train_helpers import SHIPPED


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """40 training and 6 validation documents (the first ones of each genre and split), <= 4000 chars."""
    if not SHIPPED.is_file():
        pytest.skip("data/corpus/mixed.jsonl.gz not built")
    keep, counts = [], {}
    with gzip.open(SHIPPED, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            key = (doc["genre"], doc["split"])
            limit = 12 if doc["split"] == "train" else 2
            if counts.get(key, 0) < limit:
                counts[key] = counts.get(key, 0) + 1
                doc["text"] = doc["text"][:4000]
                keep.append(doc)
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in keep))
    return path
