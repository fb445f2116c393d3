import json

import numpy as np
import pytest
from trace_fixtures import routing, vllm_response, write_jsonl

from ising_moe.errors import DataFormatError
from ising_moe.traces.vllm import read_vllm


def test_split_lists_and_whole_base64_give_the_same_sequences(tmp_path):
    rng = np.random.default_rng(1)
    full = [routing(rng, n, 3, 2, 16) for n in (7, 4)]  # two requests, (tokens, layers, top_k)
    split = [vllm_response(f[:3], [f[3:]]) for f in full]  # prompt 3 tokens + generated
    whole = [vllm_response(None, [f], encode="b64") for f in full]
    a = read_vllm(write_jsonl(tmp_path / "split.jsonl", split), n_experts=16)
    (tmp_path / "whole.json").write_text(json.dumps(whole))
    b = read_vllm(tmp_path / "whole.json", n_experts=16)
    for data in (a, b):
        assert data.experts.shape == (2, 3, 7, 2)
        np.testing.assert_array_equal(data.mask.sum(axis=1), [7, 4])
        for i, f in enumerate(full):  # experts[seq, layer, position, rank] = routed_experts[position, layer, rank]
            np.testing.assert_array_equal(data.experts[i, :, :len(f)], f.transpose(1, 0, 2))
        assert not data.experts[1, :, 4:].any()  # padding is 0
        assert data.attrs["weights"] == "imported-trace" and data.attrs["source_format"] == "vllm"
        assert data.model_id == "org/moe-model" and data.attrs["source_version"] == "vllm-0.21.0-abc"
        assert data.attrs["n_experts_origin"] == "option"
    np.testing.assert_array_equal(a.experts, b.experts)


def test_choices_share_the_prompt_and_null_routing_is_counted(tmp_path):
    rng = np.random.default_rng(2)
    prompt, g0, g1 = (routing(rng, n, 2, 2, 8) for n in (3, 2, 4))
    doc = vllm_response(prompt, [g0, g1, None])  # a one-token completion has no generated routing
    doc["choices"].append({"index": 3, "routed_experts": []})
    empty = {"choices": [{"index": 0, "routed_experts": None}]}
    data = read_vllm(write_jsonl(tmp_path / "r.jsonl", [doc, empty]))
    assert data.n_sequences == 4
    np.testing.assert_array_equal(data.experts[0, :, :5], np.concatenate([prompt, g0]).transpose(1, 0, 2))
    np.testing.assert_array_equal(data.experts[1, :, :7], np.concatenate([prompt, g1]).transpose(1, 0, 2))
    np.testing.assert_array_equal(data.experts[2, :, :3], prompt.transpose(1, 0, 2))
    np.testing.assert_array_equal(data.experts[3], data.experts[2])
    np.testing.assert_array_equal(data.mask.sum(axis=1), [5, 7, 3, 3])
    assert json.loads(data.attrs["import_notes"])["choices_without_routing"] == 1
    assert data.attrs["n_experts_origin"] == "inferred" and data.n_experts == 1 + int(
        max(prompt.max(), g0.max(), g1.max()))


def test_dense_layers_left_at_zero_are_dropped(tmp_path):
    rng = np.random.default_rng(3)
    seq = routing(rng, 6, 3, 2, 8)
    seq[:, 1] = 0  # older vLLM: the buffer spans num_hidden_layers, dense layer 1 stays 0
    data = read_vllm(write_jsonl(tmp_path / "r.jsonl", [{"routed_experts": seq.tolist()}]), n_experts=8)
    assert data.layers.tolist() == [0, 2]
    np.testing.assert_array_equal(data.experts[0], seq[:, [0, 2]].transpose(1, 0, 2))
    assert json.loads(data.attrs["import_notes"])["dense_layers_dropped"] == [1]


@pytest.mark.parametrize("fill,msg", [(0, "twice"), (-1, "negative expert id")])
def test_unfilled_rows_are_refused(tmp_path, fill, msg):
    rng = np.random.default_rng(4)
    seq = routing(rng, 5, 2, 2, 8)
    seq[2] = fill  # a prefix-cache hit: no forward pass, row left at the fill value
    with pytest.raises(DataFormatError, match=msg):
        read_vllm(write_jsonl(tmp_path / "r.jsonl", [{"routed_experts": seq.tolist()}]), n_experts=8)


@pytest.mark.parametrize("records,msg", [
    ([{"choices": [{"index": 0}]}], "missing key 'routed_experts'"),
    ([{"text": "hello"}], "missing key 'routed_experts'"),
    ([{"routed_experts": [[[1, 2]], [[3]]]}], "ragged nested lists"),
    ([{"routed_experts": [[1, 2], [3, 4]]}], "expected 3 dimensions"),
    ([{"routed_experts": [[[1, 2]]]}, {"routed_experts": [[[1, 2], [3, 4]]]}], "ragged layers"),
    ([{"routed_experts": [[[1.5, 2]]]}], "integers"),
    ([{"routed_experts": "not base64!"}], "base64"),
    ([{"routed_experts": None}], "no routed_experts"),
    ([[1, 2, 3]], "expected a JSON object"),
])
def test_malformed_responses_get_named_errors(tmp_path, records, msg):
    with pytest.raises(DataFormatError, match=msg):
        read_vllm(write_jsonl(tmp_path / "bad.jsonl", records))
