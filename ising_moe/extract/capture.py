"""Capture of the routing decisions a model actually makes, through forward hooks.

- SwitchTransformers: a forward hook on each sparse layer's ``router`` sees the raw logits and the
  capacity-masked dispatch; the chosen expert is the argmax of the router's probabilities exactly
  as the router computes them, and a token whose dispatch row is empty was dropped by capacity.
- Fused-experts families (OLMoE, Mixtral, Qwen2/3-MoE): a forward pre-hook on ``experts`` sees
  ``experts(hidden, top_k_index, top_k_weights)``, the ids dispatched, in rank order (a shared
  expert, as in Qwen2-MoE, is not part of the top-k); a hook on ``gate`` reads the logits for the
  optional router probabilities and entropies.
"""

from __future__ import annotations

import re

import numpy as np
import torch

__all__ = ["RoutingCapture", "moe_blocks"]


def _layer_index(name: str) -> int:
    """Block index from a module name such as ``encoder.block.3.layer.1.mlp`` or ``layers.7.mlp``."""
    match = re.search(r"(?:block|layers|h)\.(\d+)\.", name + ".")
    if match is None:
        raise ValueError(f"cannot find a layer index in module name {name!r}")
    return int(match.group(1))


def moe_blocks(model, family: str):
    """``(layer_index, module)`` of every MoE block, in layer order."""
    blocks = []
    for name, module in model.named_modules():
        if family == "switch_transformers":
            if hasattr(module, "router") and hasattr(module, "experts"):
                blocks.append((_layer_index(name), module))
        elif hasattr(module, "gate") and hasattr(module, "experts") and not hasattr(module, "router"):
            blocks.append((_layer_index(name), module))
    return sorted(blocks, key=lambda item: item[0])


class RoutingCapture:
    """Context manager collecting the routing of every MoE block during forward passes.

    Parameters
    ----------
    model : torch.nn.Module
    family : str
    layers : sequence of int, optional
        Block indices to record (default all MoE blocks).
    router_probs : bool
        Also record the chosen experts' probabilities and the router entropy per token.
    hidden_states : bool
        Also record the router's input hidden states (large).
    """

    def __init__(self, model, family: str, layers=None, router_probs: bool = False,
                 hidden_states: bool = False):
        self.family = family
        from ..errors import InvalidParameterError, UnsupportedModelError

        blocks = moe_blocks(model, family)
        if not blocks:
            dense = getattr(model.config, "mlp_only_layers", None)
            why = f" (every layer is listed in mlp_only_layers = {list(dense)})" if dense else ""
            raise UnsupportedModelError(
                f"this {family} model has no MoE layer{why}: there is no routing to extract")
        available = [index for index, _ in blocks]
        if layers is not None:
            missing = sorted(set(layers) - set(available))
            if missing:
                raise InvalidParameterError(
                    f"layers {missing} are not MoE layers of this model; its MoE layers are {available}"
                )
            blocks = [(i, m) for i, m in blocks if i in set(layers)]
        self.blocks = blocks
        self.layers = [index for index, _ in blocks]
        self.want_probs = router_probs
        self.want_hidden = hidden_states
        self._handles = []
        self._records: dict[int, dict[str, torch.Tensor]] = {}

    def check_finite(self) -> None:
        """Refuse router weights holding NaN or infinities (a damaged checkpoint): one such value sends
        every token of the following layers to the same experts, which would look like routing."""
        from ..errors import NonFiniteError

        for index, block in self.blocks:
            router = block.router if self.family == "switch_transformers" else block.gate
            for name, weight in router.named_parameters():
                bad = int((~torch.isfinite(weight.detach())).sum())
                if bad:
                    raise NonFiniteError(
                        f"the router of MoE layer {index} ({name}) holds {bad} NaN or infinite value(s): the checkpoint "
                        "is damaged and its routing would be meaningless; restore its weights")

    def _check_logits(self, index: int, logits) -> None:
        if torch.is_tensor(logits) and logits.is_floating_point() and not bool(torch.isfinite(logits).all()):
            from ..errors import NonFiniteError

            raise NonFiniteError(
                f"the router logits of MoE layer {index} are NaN or infinite for some tokens: a weight before it is "
                "damaged or overflows in this dtype (try --dtype fp32); nothing was written")

    def __enter__(self):
        for index, block in self.blocks:
            if self.family == "switch_transformers":
                self._handles.append(block.router.register_forward_hook(self._switch_hook(index)))
            else:
                self._handles.append(block.experts.register_forward_pre_hook(self._experts_hook(index)))
                self._handles.append(block.gate.register_forward_hook(self._gate_hook(index)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # ------------------------------------------------------------------ hooks
    def _switch_hook(self, index: int):
        def hook(router, inputs, outputs):
            dispatch, _, logits = outputs
            self._check_logits(index, logits)
            # the router's own decision: argmax of softmax(logits) in its dtype, cast back
            probs = torch.softmax(logits, dim=-1, dtype=router.dtype).to(router.input_dtype)
            rec = {"ids": probs.argmax(dim=-1, keepdim=True), "dropped": dispatch.sum(dim=-1) == 0}
            if self.want_probs:
                p32 = torch.softmax(logits.float(), dim=-1)
                rec["probs"] = p32.gather(-1, rec["ids"])
                rec["entropy"] = -(p32 * torch.log(p32.clamp_min(1e-30))).sum(-1)
            if self.want_hidden:
                rec["hidden"] = inputs[0]
            self._records[index] = rec

        return hook

    def _experts_hook(self, index: int):
        def hook(module, args):
            self._records.setdefault(index, {})["ids"] = args[1]

        return hook

    def _gate_hook(self, index: int):
        def hook(module, inputs, outputs):
            self._check_logits(index, outputs[0] if isinstance(outputs, (tuple, list)) else outputs)
            rec = self._records.setdefault(index, {})
            if self.want_probs:
                rec["logits"] = outputs[0]
            if self.want_hidden:
                rec["hidden"] = inputs[0]

        return hook

    # ------------------------------------------------------------------ results
    def reset(self) -> None:
        self._records.clear()

    def collect(self, batch: int, length: int) -> dict[str, np.ndarray]:
        """Arrays of the last forward pass, shaped (batch, n_layers, length, ...)."""
        missing = [i for i in self.layers if "ids" not in self._records.get(i, {})]
        if missing:
            raise RuntimeError(f"no routing was captured for layers {missing}")
        ids, dropped, probs, entropy, hidden = [], [], [], [], []
        for index in self.layers:
            rec = self._records[index]
            k = rec["ids"].shape[-1]
            layer_ids = rec["ids"].reshape(batch, length, k)
            ids.append(layer_ids)
            if "dropped" in rec:
                dropped.append(rec["dropped"].reshape(batch, length))
            if self.want_probs:
                if "logits" in rec:
                    p32 = torch.softmax(rec["logits"].float(), dim=-1)
                    probs.append(p32.gather(-1, rec["ids"].long()).reshape(batch, length, k))
                    entropy.append((-(p32 * torch.log(p32.clamp_min(1e-30))).sum(-1)).reshape(batch, length))
                else:
                    probs.append(rec["probs"].reshape(batch, length, k))
                    entropy.append(rec["entropy"].reshape(batch, length))
            if self.want_hidden:
                hidden.append(rec["hidden"].reshape(batch, length, -1))
        out = {"experts": torch.stack(ids, dim=1).cpu().numpy()}
        if dropped:
            out["dropped"] = torch.stack(dropped, dim=1).cpu().numpy()
        if probs:
            out["router_probs"] = torch.stack(probs, dim=1).float().cpu().numpy().astype(np.float16)
            out["router_entropy"] = torch.stack(entropy, dim=1).float().cpu().numpy().astype(np.float16)
        if hidden:
            out["hidden_states"] = torch.stack(hidden, dim=1).float().cpu().numpy().astype(np.float16)
        return out
