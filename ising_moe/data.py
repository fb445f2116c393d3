"""Expert-sequence data: the in-memory form of an extraction file, and its validated reader.

An extraction file (kind ``"experts"``, written by ``isingmoe extract``) holds

- ``experts`` (sequence, layer, position, rank): the router's top-k expert ids in rank order;
- ``mask`` (sequence, position): valid (non-padding) tokens;
- ``layer`` (layer,): the model's block index of each MoE layer;
- optional ``dropped`` (sequence, layer, position): Switch tokens dropped by expert capacity; their
  ``experts`` entry is the router's choice, which no expert processed;
- optional ``token_ids``, ``router_probs`` (probabilities of the chosen experts),
  ``router_entropy``, ``hidden_states`` (router inputs);

and the provenance attributes ``model_id``, ``revision`` (``"local"`` for a checkpoint directory),
``weights`` (``"pretrained"``, ``"trained-here"`` for an organism of ``isingmoe train``, or
``"random-init"``; ``"imported-trace"`` for routing recorded by another engine and converted by
:mod:`ising_moe.traces`, which adds ``source_format`` and ``source_files``), ``subject`` (one sentence saying what the model is), ``n_experts``, ``top_k``,
``checkpoint_sha256`` / ``checkpoint_files`` (SHA-256 of a local checkpoint's config, tokenizer and
weight files), ``random_weights`` (JSON list of weights the checkpoint lacked, randomly initialised
under ``--allow-missing-weights``; normally empty), ``positions`` (the position ids given to a RoPE
model: ``natural``, ``constant``, ``shuffled``, ``reversed``), ``stack`` (``"encoder"`` for Switch:
only its encoder's MoE layers are extracted) and the rest of the extraction parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._util import as_int, as_mask
from .errors import DataFormatError, InvalidParameterError
from .io import open_h5, read_array, read_attr, read_params

__all__ = ["ExpertSequences", "load_experts", "save_experts", "subject_label", "DROPPED_POLICIES"]

#: how Switch tokens dropped by expert capacity enter an analysis
DROPPED_POLICIES = ("exclude", "state", "router")
#: the one default for capacity-dropped tokens, here, in ``isingmoe measure`` and in ``isingmoe fit``:
#: the router's choice (drops are not missing at random: excluding them creates position dependence
#: the router does not have)
DEFAULT_DROPPED = "router"


@dataclass(frozen=True, eq=False)
class ExpertSequences:
    """Routing decisions of one model over a corpus.

    Parameters
    ----------
    experts : ndarray of int, shape (n_sequences, n_layers, n_positions, top_k)
    mask : ndarray of bool, shape (n_sequences, n_positions)
    n_experts : int
    layers : ndarray of int, shape (n_layers,), optional
        Model block index of each MoE layer (default ``0..n_layers-1``).
    dropped : ndarray of bool, shape (n_sequences, n_layers, n_positions), optional
    token_ids : ndarray of int, shape (n_sequences, n_positions), optional
    document_ids : ndarray of str, shape (n_sequences,), optional
        The corpus document each sequence comes from (a JSONL record's ``doc_id``).
    router_probs : ndarray of float, shape (n_sequences, n_layers, n_positions, top_k), optional
    router_entropy : ndarray of float, shape (n_sequences, n_layers, n_positions), optional
    attrs : dict
        Provenance of the source (``model_id``, ``weights``, ...).
    path : Path, optional
        The file it was read from.
    """

    experts: np.ndarray
    mask: np.ndarray
    n_experts: int
    layers: np.ndarray | None = None
    dropped: np.ndarray | None = None
    token_ids: np.ndarray | None = None
    document_ids: np.ndarray | None = None
    router_probs: np.ndarray | None = None
    router_entropy: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self):
        experts = np.asarray(self.experts)
        if experts.ndim == 2:  # (n_sequences, n_positions): one layer, top-1
            experts = experts[:, None, :, None]
        if experts.ndim != 4 or not np.issubdtype(experts.dtype, np.integer):
            raise InvalidParameterError(
                "experts must be an integer array of shape (n_sequences, n_layers, n_positions, top_k) "
                f"or (n_sequences, n_positions), got {experts.dtype} {experts.shape}"
            )
        n_seq, n_layers, n_pos, _ = experts.shape
        n_experts = as_int(self.n_experts, "n_experts", minimum=1)
        mask = as_mask(self.mask, (n_seq, n_pos))
        if experts.size and (experts.min() < 0 or experts.max() >= n_experts):
            raise InvalidParameterError(
                f"expert ids must lie in 0..{n_experts - 1}, found [{experts.min()}, {experts.max()}]"
            )
        layers = np.arange(n_layers) if self.layers is None else np.asarray(self.layers, dtype=np.int64)
        if layers.shape != (n_layers,):
            raise InvalidParameterError(f"layers must have shape ({n_layers},), got {layers.shape}")
        dropped = None if self.dropped is None else as_mask(self.dropped, (n_seq, n_layers, n_pos), "dropped")
        object.__setattr__(self, "experts", experts)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "n_experts", n_experts)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "dropped", dropped)

    # ------------------------------------------------------------------ shape
    @property
    def n_sequences(self) -> int:
        return self.experts.shape[0]

    @property
    def n_layers(self) -> int:
        return self.experts.shape[1]

    @property
    def n_positions(self) -> int:
        return self.experts.shape[2]

    @property
    def top_k(self) -> int:
        return self.experts.shape[3]

    # ------------------------------------------------------------------ provenance
    @property
    def model_id(self) -> str:
        return str(self.attrs.get("model_id", "unknown"))

    @property
    def weights(self) -> str:
        return str(self.attrs.get("weights", "unknown"))

    @property
    def is_random_init(self) -> bool:
        return self.weights == "random-init"

    @property
    def provenance_note(self) -> str | None:
        """The line every report built from this data must print: random-init weights, a model trained
        here, weights the checkpoint lacked, or ablated positions (else ``None``)."""
        notes = []
        if self.is_random_init:
            extra = f" ({self.attrs['reduced']})" if self.attrs.get("reduced") else ""
            notes.append(f"{self.model_id} data comes from RANDOM-INIT weights{extra}, not a trained "
                         "model: it tests the pipeline and says nothing about trained routing.")
        elif self.weights == "trained-here":
            notes.append(f"{self.attrs.get('subject') or self.model_id + ' (trained here)'}.")
        random_weights = self.attrs.get("random_weights", "[]")
        if random_weights not in ("", "[]"):
            notes.append(f"weights missing from the checkpoint were randomly initialised: {random_weights}.")
        if self.attrs.get("positions", "natural") != "natural":
            notes.append(f"routing extracted with ablated position ids ({self.attrs['positions']}).")
        return "NOTE: " + " ".join(notes) if notes else None

    # ------------------------------------------------------------------ views
    def layer_index(self, layer: int) -> int:
        """Position in the ``layer`` axis of a model block index."""
        hits = np.flatnonzero(self.layers == layer)
        if hits.size == 0:
            raise InvalidParameterError(
                f"layer {layer} is not a MoE layer of this data; available: {self.layers.tolist()}"
            )
        return int(hits[0])

    def states(self, layer: int, rank: int = 0, dropped: str = DEFAULT_DROPPED):
        """Top-``rank`` expert sequence of one layer as chain states.

        Parameters
        ----------
        layer : int
            Model block index (one of ``layers``).
        rank : int, default 0
            0 = the router's first choice.
        dropped : {"router", "exclude", "state"}, default :data:`DEFAULT_DROPPED` (``"router"``)
            Capacity-dropped tokens: kept as the router's choice (what the router decided, ignoring
            capacity; the default of ``measure`` and ``fit`` too), masked out, or mapped to an extra
            state ``n_experts``.

        Returns
        -------
        states : ndarray of int32, shape (n_sequences, n_positions)
        mask : ndarray of bool, shape (n_sequences, n_positions)
        n_states : int
        """
        if dropped not in DROPPED_POLICIES:
            raise InvalidParameterError(f"dropped must be one of {DROPPED_POLICIES}, got {dropped!r}")
        rank = as_int(rank, "rank", 0, self.top_k - 1)
        li = self.layer_index(layer)
        x = self.experts[:, li, :, rank].astype(np.int32)
        mask = self.mask.copy()
        n_states = self.n_experts
        if self.dropped is not None:
            d = self.dropped[:, li, :] & mask
            if dropped == "exclude":
                mask &= ~d
            elif dropped == "state":
                x = np.where(d, self.n_experts, x).astype(np.int32)
                n_states += 1
        x = np.where(mask, x, 0).astype(np.int32)
        return x, mask, n_states

    def indicators(self, layer: int, expert: int, dropped: str = DEFAULT_DROPPED):
        """Binary sequence ``1[expert in top-k]`` of one layer (the per-expert view of top-k routing).

        Returns
        -------
        states : ndarray of int32 in {0, 1}, shape (n_sequences, n_positions)
        mask : ndarray of bool, shape (n_sequences, n_positions)
        """
        if dropped not in ("exclude", "router"):
            raise InvalidParameterError("indicators support dropped='exclude' or 'router'")
        expert = as_int(expert, "expert", 0, self.n_experts - 1)
        li = self.layer_index(layer)
        x = (self.experts[:, li] == expert).any(axis=-1).astype(np.int32)
        mask = self.mask.copy()
        if self.dropped is not None and dropped == "exclude":
            mask &= ~self.dropped[:, li]
        return np.where(mask, x, 0).astype(np.int32), mask


def load_experts(path, layers=None) -> ExpertSequences:
    """Read and validate an extraction file.

    Parameters
    ----------
    path : path-like
    layers : sequence of int, optional
        Model block indices to keep (default all).

    Raises
    ------
    DataFormatError
        Malformed, unfinished or of another kind; expert ids out of range.
    """
    path = Path(path)
    with open_h5(path, kind="experts") as f:
        params = read_params(f)
        experts = read_array(f, "experts", kinds="iu", ndim=4)
        n_seq, n_layers, n_pos, top_k = experts.shape
        mask = read_array(f, "mask", kinds="b", shape=(n_seq, n_pos))
        layer_ids = read_array(f, "layer", kinds="iu", shape=(n_layers,))
        dropped = read_array(f, "dropped", kinds="b", shape=(n_seq, n_layers, n_pos), required=False)
        token_ids = read_array(f, "token_ids", kinds="iu", shape=(n_seq, n_pos), required=False)
        document_ids = read_document_ids(f, n_seq, path)
        probs = read_array(f, "router_probs", kinds="f", shape=(n_seq, n_layers, n_pos, top_k), required=False)
        entropy = read_array(f, "router_entropy", kinds="f", shape=(n_seq, n_layers, n_pos), required=False)
        n_experts = read_attr(f, "n_experts", int)
        attrs = {key: _attr_value(f.attrs[key]) for key in f.attrs}
        attrs["params"] = params
        if read_attr(f, "top_k", int) != top_k:
            raise DataFormatError(f"{path}: top_k attribute disagrees with the experts dataset")
    if experts.size and (experts.max() >= n_experts):
        raise DataFormatError(f"{path}: expert id {experts.max()} >= n_experts = {n_experts}")
    if layers is not None:
        keep = []
        for layer in layers:
            hits = np.flatnonzero(layer_ids == layer)
            if hits.size == 0:
                raise InvalidParameterError(
                    f"layer {layer} is not in {path}; its MoE layers are {layer_ids.tolist()}"
                )
            keep.append(int(hits[0]))
        experts, layer_ids = experts[:, keep], layer_ids[keep]
        dropped = None if dropped is None else dropped[:, keep]
        probs = None if probs is None else probs[:, keep]
        entropy = None if entropy is None else entropy[:, keep]
    return ExpertSequences(experts=experts, mask=mask, n_experts=n_experts, layers=layer_ids,
                           dropped=dropped, token_ids=token_ids, document_ids=document_ids, router_probs=probs,
                           router_entropy=entropy, attrs=attrs, path=path)


#: what the ``weights`` attribute says about the routing's origin, in words for titles and captions
_NATURE = {"random-init": "random-init weights, not trained", "pretrained": "pretrained",
           "imported-trace": "imported routing trace", "trained-here": "trained here, not a production model",
           "partly-random": "PARTLY RANDOM: weights missing from the checkpoint randomly initialised"}


def subject_label(data) -> str:
    """One line naming the subject of an analysis: the model and the nature of its weights.

    ``"switch-8 (google/switch-base-8; random-init weights, not trained)"``. The nature comes from the
    ``weights`` attribute (``random-init``, ``pretrained``, ``imported-trace``, ``trained-here``); a
    local model directory holding a ``MODEL_CARD.md`` (written by ``isingmoe train``) counts as
    trained here. Figures and reports put it in their titles so no figure is read without it.

    Parameters
    ----------
    data : ExpertSequences or dict
        The data or its attributes.
    """
    attrs = dict(data) if isinstance(data, Mapping) else getattr(data, "attrs", {})
    model_id = str(attrs.get("model_id") or "unknown model")
    alias = str(attrs.get("model_alias") or attrs.get("train_preset") or "")
    weights = str(attrs.get("weights") or "unknown")
    if weights == "pretrained" and (attrs.get("trained_here") or (Path(model_id) / "MODEL_CARD.md").is_file()):
        weights = "trained-here"
    nature = _NATURE.get(weights, f"weights: {weights}")
    if attrs.get("reduced"):
        nature += f", {attrs['reduced']}"
    if alias and Path(model_id).is_absolute():  # a local checkpoint: its alias, not this machine's path
        return f"{alias} ({nature})"
    return f"{alias} ({model_id}; {nature})" if alias and alias != model_id else f"{model_id} ({nature})"


def write_document_ids(group, document_ids) -> None:
    """Store the corpus document of every sequence (``document_ids``, strings, dimension ``sequence``)."""
    import h5py

    values = np.asarray([str(d) for d in document_ids], dtype=object)
    group.create_dataset("document_ids", data=values, dtype=h5py.string_dtype())


def read_document_ids(group, n_sequences: int, path) -> np.ndarray | None:
    """The ``document_ids`` dataset as an array of str, or ``None`` when the file has none."""
    if "document_ids" not in group:
        return None
    dset = group["document_ids"]
    if dset.shape != (n_sequences,):
        raise DataFormatError(f"{path}: document_ids has shape {dset.shape}, expected ({n_sequences},)")
    return np.asarray(dset.asstr()[()], dtype=str)


def read_hidden_states(path, layer: int, max_sequences: int | None = None) -> np.ndarray | None:
    """Router-input hidden states of one layer, shape (n_sequences, n_positions, d_model), if stored."""
    with open_h5(path, kind="experts") as f:
        if "hidden_states" not in f:
            return None
        dset = f["hidden_states"]
        layer_ids = read_array(f, "layer", kinds="iu", ndim=1)
        hits = np.flatnonzero(layer_ids == layer)
        if hits.size == 0 or dset.ndim != 4:
            raise DataFormatError(f"{path}: hidden_states has no layer {layer}")
        stop = dset.shape[0] if max_sequences is None else min(max_sequences, dset.shape[0])
        return dset[:stop, int(hits[0])].astype(np.float32)


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def save_experts(data: ExpertSequences, path, *, overwrite: bool = False, params: dict | None = None) -> None:
    """Write expert sequences in the extraction file format (e.g. routing obtained elsewhere).

    ``data.attrs`` should say where the routing comes from (``model_id``, ``weights``); both
    default to ``"unknown"``.
    """
    from .io import atomic_h5, write_array

    attrs = {"model_id": "unknown", "weights": "unknown", **{k: v for k, v in data.attrs.items()
                                                             if isinstance(v, (str, int, float, bool))}}
    attrs.update({"n_experts": data.n_experts, "top_k": data.top_k})
    for key in ("schema_version", "ising_moe_version", "kind", "created", "params", "seed", "finished"):
        attrs.pop(key, None)
    id_dtype = np.uint8 if data.n_experts <= 256 else np.uint16
    coords = {"layer": data.layers}
    with atomic_h5(path, kind="experts", params=params or {}, overwrite=overwrite, attrs=attrs) as f:
        write_array(f, "experts", data.experts.astype(id_dtype), ("sequence", "layer", "position", "rank"), coords)
        write_array(f, "mask", data.mask, ("sequence", "position"))
        for name, dims in (("dropped", ("sequence", "layer", "position")), ("token_ids", ("sequence", "position")),
                           ("router_probs", ("sequence", "layer", "position", "rank")),
                           ("router_entropy", ("sequence", "layer", "position"))):
            value = getattr(data, name)
            if value is not None:
                write_array(f, name, value, dims, coords)
        if data.document_ids is not None:
            write_document_ids(f, data.document_ids)
