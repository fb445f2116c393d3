"""Router losses and routing statistics of the training loop (torch).

The routers' logits are captured with forward hooks on the routers of the real classes
(``OlmoeTopKRouter``: output 0, logits of shape ``(batch * length, E)``;
``SwitchTransformersTop1Router``: output 2, logits of shape ``(batch, length, E)``), so that the
same code serves every balancing mode and the statistics.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["RouterCapture", "class_aux_loss", "mem_loss", "routing_stats", "z_loss"]

_ROUTERS = {"OlmoeTopKRouter": 0, "SwitchTransformersTop1Router": 2}


class RouterCapture:
    """Forward hooks that keep the router logits of the last forward pass.

    Attributes
    ----------
    names : list of str
        Module names of the routers, in model order (Switch: encoder routers first).
    logits : list of Tensor
        Per router, the logits of the last forward, shape ``(n_tokens, E)`` (flattened).
    """

    def __init__(self, model):
        self.names, self.logits, self._handles = [], [], []
        for name, module in model.named_modules():
            index = _ROUTERS.get(type(module).__name__)
            if index is None:
                continue
            slot = len(self.names)
            self.names.append(name)
            self.logits.append(None)
            self._handles.append(module.register_forward_hook(self._hook(slot, index)))

    def _hook(self, slot, index):
        def hook(module, args, output):
            logits = output[index]
            self.logits[slot] = logits.reshape(-1, logits.shape[-1])
        return hook

    def is_decoder(self, i: int) -> bool:
        return ".decoder." in f".{self.names[i]}."

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _f32(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64: the gradient tests run in double precision)."""
    return x if x.dtype == torch.float64 else x.float()


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the first axis of ``x`` (shape (n, ...)) over rows where ``mask`` (shape (n,))."""
    if mask is None:
        return x.mean(dim=0)
    w = mask.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return (x * w).sum(dim=0) / w.sum().clamp_min(1.0)


def mem_loss(logits_per_layer, masks) -> torch.Tensor:
    r"""Maximum-entropy balancing loss: the layer mean of :math:`\mathrm{KL}(\bar p \,\|\, u)`.

    .. math:: L = \frac{1}{L_r} \sum_l \sum_e \bar p_{l,e} \log(E \, \bar p_{l,e}),
              \qquad \bar p_{l} = \frac{1}{N} \sum_{t \,\mathrm{valid}} \mathrm{softmax}(z_{l,t})

    where :math:`z_{l,t}` are the router logits of token ``t`` in router layer ``l`` and ``u`` the
    uniform distribution over the ``E`` experts. Zero exactly when the batch-mean routing
    distribution is uniform; it constrains only the marginal, not the per-token choices.

    Parameters
    ----------
    logits_per_layer : sequence of Tensor, each of shape (n_tokens, E)
    masks : sequence of (Tensor of bool, shape (n_tokens,) or None)
        Valid tokens of each layer.
    """
    total = 0.0
    for logits, mask in zip(logits_per_layer, masks):
        p_bar = _masked_mean(torch.softmax(_f32(logits), dim=-1), mask)
        n_experts = p_bar.shape[-1]
        total = total + torch.sum(p_bar * torch.log(p_bar * n_experts))
    return total / len(logits_per_layer)


def z_loss(logits_per_layer, masks) -> torch.Tensor:
    r"""Router z-loss (ST-MoE): the layer mean of the token mean of :math:`(\log \sum_e e^{z_e})^2`."""
    total = 0.0
    for logits, mask in zip(logits_per_layer, masks):
        total = total + _masked_mean(torch.logsumexp(_f32(logits), dim=-1) ** 2, mask)
    return total / len(logits_per_layer)


def class_aux_loss(family: str, capture: RouterCapture, config, attention_mask=None, batch_size=None):
    """The class's own auxiliary load-balancing loss (without its coefficient), computed by the
    class's own function from the captured logits.

    OLMoE: ``modeling_olmoe.load_balancing_loss_func`` over all layers (padding excluded by the
    attention mask). Switch: ``modeling_switch_transformers.load_balancing_loss_func`` of the
    encoder plus that of the decoder, on the router logits of all sparse layers concatenated
    along the sequence, as ``SwitchTransformersForConditionalGeneration.forward`` does.
    """
    if family == "olmoe":
        from transformers.models.olmoe.modeling_olmoe import load_balancing_loss_func

        return load_balancing_loss_func(tuple(capture.logits), config.num_experts,
                                        config.num_experts_per_tok, attention_mask)
    from transformers.models.switch_transformers.modeling_switch_transformers import (
        load_balancing_loss_func,
    )

    total = 0.0
    for decoder in (False, True):
        group = [lg.reshape(batch_size, -1, lg.shape[-1])
                 for i, lg in enumerate(capture.logits) if capture.is_decoder(i) == decoder]
        if group:
            logits = torch.cat(group, dim=1)
            total = total + load_balancing_loss_func(torch.softmax(logits, dim=-1), logits.argmax(dim=-1))
    return total


@torch.no_grad()
def routing_stats(capture: RouterCapture, masks, top_k: int):
    """Per router layer, on the valid tokens of the last forward.

    Returns
    -------
    token_entropy : ndarray, shape (n_layers,)
        Mean over tokens of the entropy (nats) of the router's softmax.
    load : ndarray, shape (n_layers, E)
        Share of the top-k assignments that go to each expert (rows sum to 1).
    topk : list of ndarray of int16, each of shape (n_valid_tokens, top_k)
        The sorted top-k expert sets of every valid token.
    """
    entropy, load, topk = [], [], []
    for logits, mask in zip(capture.logits, masks):
        logits = logits.float()
        if mask is not None:
            logits = logits[mask.reshape(-1)]
        logp = torch.log_softmax(logits, dim=-1)
        entropy.append(float(-(logp.exp() * logp).sum(-1).mean()))
        idx = torch.topk(logits, top_k, dim=-1).indices
        counts = torch.bincount(idx.reshape(-1), minlength=logits.shape[-1]).double()
        load.append((counts / counts.sum()).numpy())
        topk.append(torch.sort(idx, dim=-1).values.numpy().astype(np.int16))
    return np.array(entropy), np.array(load), topk


def load_entropy(load: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of an expert-load array, ``<= log E``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(load > 0, load * np.log(load), 0.0)
    return -terms.sum(axis=-1)


def warmup_cosine(step: int, n_steps: int, warmup: int, lr: float, floor: float = 0.1) -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up over ``warmup`` steps, then
    cosine decay to ``floor * lr`` at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, n_steps - warmup - 1)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
