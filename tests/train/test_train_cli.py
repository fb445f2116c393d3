"""``isingmoe train`` user errors: exit 2, one line, nothing left behind."""

import pytest
from click.testing import CliRunner

from ising_moe.cli import main


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"doc_id": "a", "text": "x", "split": "train"}\n{"doc_id": "b", "text": "y", "split": "validation"}\n')
    return path


@pytest.mark.parametrize("args, message", [
    (["--preset", "gpt-9"], "unknown preset 'gpt-9'"),
    (["--preset", "olmoe-tiny", "--corpus", "missing.jsonl"], "does not exist"),
    (["--preset", "olmoe-tiny", "--tokens", "0"], "--tokens must be a positive integer"),
    (["--preset", "olmoe-tiny", "--tokens", "-5"], "--tokens must be a positive integer"),
])
def test_user_errors_exit_2_with_one_line(args, message, corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "--corpus" not in args:
        args = [*args, "--corpus", str(corpus)]
    result = CliRunner().invoke(main, ["train", *args, "-o", "out"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


def test_malformed_corpus_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"text": "no id"}\n')
    result = CliRunner().invoke(main, ["train", "--preset", "olmoe-tiny", "--corpus", "bad.jsonl", "-o", "out"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "doc_id" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_existing_output_needs_overwrite(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["train", "--preset", "olmoe-tiny", "--corpus", str(corpus), "-o", "out"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "exists: pass --overwrite" in lines[0]
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "out.partial").exists()


def test_import_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, ising_moe, ising_moe.train, ising_moe.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
