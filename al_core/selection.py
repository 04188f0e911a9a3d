"""What a strategy may ask for beyond class probabilities, computed lazily on the training device.

A strategy declares what it reads in `needs` (a set of the names in `NEEDS`); the run loop then
builds a `SelectionInputs` whose values are computed in batches the first time they are read and
kept for the rest of the selection. Reading a value the strategy did not declare is an error, so
nothing is computed that a strategy does not use and `needs` is checked by every end-to-end test.

| name | shape | what |
| --- | --- | --- |
| `probs` | N x K | softmax of the candidates' logits (eval mode) |
| `embeddings` | N x D | the candidates' penultimate-layer features: the input of the classifier |
| `labelled_embeddings` | M x D | the same for the labelled set |
| `grad_embeddings` | N x (K*D) | BADGE: (p - onehot(argmax p)) outer embedding, the gradient of the cross-entropy at the predicted label w.r.t. the classifier's weights |
| `mc_probs` | T x N x K | class probabilities of T stochastic passes with dropout on (BatchNorm in eval mode); needs `train.dropout > 0` |

The classifier is the model's `linear` attribute when it has one (the built-in ResNets), else its
last `nn.Linear`; its input, caught by a forward pre-hook, is the embedding. The model's forward
keeps its contract, (logits, [four stage features]). A model whose only dropout is its `dropout`
module right before the classifier says so with `dropout_only_before_classifier = True` (the
built-in ResNets): its T passes then share one pass of the backbone, since only the head differs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from al_core import seeding
from al_core.models import scoring_model

NEEDS = ("probs", "embeddings", "labelled_embeddings", "grad_embeddings", "mc_probs")
MC_PASSES = 20  # T stochastic passes for mc_probs, unless the strategy sets `mc_passes`


def classifier(model: nn.Module) -> nn.Module | None:
    head = getattr(model, "linear", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


class SelectionInputs:
    """Lazily computed, cached inputs of one selection (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        data,
        candidates: np.ndarray,
        labelled: np.ndarray,
        needs,
        batch_size: int,
        amp,
        trial: int,
        cycle: int,
        mc_passes: int = MC_PASSES,
        check_stop: Callable[[], None] | None = None,
        strategy: str = "",
    ) -> None:
        unknown = set(needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"strategy {strategy!r}: unknown needs {sorted(unknown)}; expected some of {', '.join(NEEDS)}")
        self.model, self.data = model, data
        self.candidates, self.labelled = candidates, labelled
        self.needs = frozenset(needs)
        self.batch_size, self.amp = batch_size, amp
        self.trial, self.cycle, self.mc_passes = trial, cycle, mc_passes
        self.check_stop = check_stop
        self.strategy = strategy
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.data.pool_x.device

    def get(self, name: str) -> torch.Tensor:
        if name not in NEEDS:
            raise AttributeError(f"no selection input {name!r}; expected one of {', '.join(NEEDS)}")
        if name not in self.needs:
            raise RuntimeError(f"strategy {self.strategy!r} reads {name!r} but does not list it in its `needs`")
        if name not in self._cache:
            self._compute(name)
        return self._cache[name]

    # ------------------------------------------------------------------------------------------
    def _compute(self, name: str) -> None:
        if name in ("probs", "embeddings", "grad_embeddings"):
            if "probs" not in self._cache:  # one pass gives the probabilities and the embeddings
                want_emb = bool({"embeddings", "grad_embeddings"} & self.needs)
                probs, emb = self._pass(self.candidates, want_emb)
                self._cache["probs"] = probs
                if emb is not None:
                    self._cache["embeddings"] = emb
            if name == "grad_embeddings":
                self._cache[name] = grad_embeddings(self._cache["probs"], self._cache["embeddings"])
        elif name == "labelled_embeddings":
            self._cache[name] = self._pass(self.labelled, True)[1]
        elif name == "mc_probs":
            self._cache[name] = self._mc_probs()

    @torch.no_grad()
    def _pass(self, pool_idx: np.ndarray, want_emb: bool, mc: bool = False):
        """Probabilities (N x K) and, when asked, embeddings (N x D) of pool indices, on the device."""
        model, data = scoring_model(self.model), self.data
        if mc:
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
        head = classifier(model) if want_emb else None
        if want_emb and head is None:
            raise RuntimeError(f"strategy {self.strategy!r} needs embeddings, but the model has no nn.Linear classifier")
        caught: list[torch.Tensor] = []
        hook = head.register_forward_pre_hook(lambda m, inp: caught.append(inp[0].detach())) if head is not None else None
        idx = torch.as_tensor(np.asarray(pool_idx), dtype=torch.long).to(data.pool_x.device)
        probs, embs = [], []
        try:
            for x in data.batches(lambda sl: data.pool_x[idx[sl]], idx.shape[0], self.batch_size, model, self.check_stop):
                with self.amp:
                    logits, _ = model(x)
                probs.append(torch.softmax(logits.float(), dim=1))
                if hook is not None:
                    embs.append(torch.flatten(caught.pop(), 1).float())
        finally:
            if hook is not None:
                hook.remove()
            model.eval()
        p = torch.cat(probs) if probs else torch.empty(0, data.n_classes, device=self.device)
        if not want_emb:
            return p, None
        return p, (torch.cat(embs) if embs else torch.empty(0, head.in_features, device=self.device))

    def _mc_probs(self) -> torch.Tensor:
        """T passes with dropout on, their masks drawn from (trial, cycle, "mc-dropout")."""
        if not any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.model.modules()):
            raise RuntimeError(
                f"strategy {self.strategy!r} needs MC dropout, but the model has no dropout with p > 0 "
                "(set train.dropout > 0; a plugin model must take a `dropout` argument)"
            )
        devices = [self.device] if self.device.type == "cuda" else []
        out = []
        head = classifier(self.model)
        fast = getattr(self.model, "dropout_only_before_classifier", False) and head is not None
        emb = self._pass(self.candidates, True)[1] if fast else None  # one backbone pass (eval mode)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seeding.torch_seed(self.trial, self.cycle, 0, "mc-dropout"))
            for _ in range(self.mc_passes):
                if fast:  # only the head is stochastic: T passes of dropout + classifier over the embeddings
                    out.append(self._head_pass(head, emb))
                else:
                    out.append(self._pass(self.candidates, False, mc=True)[0])
        return torch.stack(out)

    @torch.no_grad()
    def _head_pass(self, head: nn.Module, emb: torch.Tensor) -> torch.Tensor:
        """One stochastic pass of the model's dropout and classifier over the embeddings (N x K)."""
        if not emb.shape[0]:
            return torch.empty(0, self.data.n_classes, device=self.device)
        p = self.model.dropout.p
        return torch.cat([torch.softmax(head(F.dropout(e, p, True)).float(), 1) for e in emb.split(self.batch_size)])


def grad_embeddings(probs: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """BADGE's gradient embeddings in closed form: row i is (p_i - onehot(argmax p_i)) outer emb_i, flattened."""
    return torch.einsum("nk,nd->nkd", grad_scale(probs), emb).reshape(probs.shape[0], -1)


def grad_scale(probs: torch.Tensor) -> torch.Tensor:
    """p - onehot(argmax p): the cross-entropy's gradient w.r.t. the logits at the predicted label."""
    return probs - F.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)
