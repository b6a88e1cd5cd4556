"""Mixture-of-experts feed-forward (`ffn=moe`): a router sends each token to `top_k` of `n_experts` SwiGLU experts,
plus `shared_experts` SwiGLU experts every token passes through (DeepSeekMoE, Dai et al. 2024).

Balancing (`balance`):
- `aux_loss` (Switch, Fedus et al. 2021; GShard; DeepSeekMoE's expert-level loss): softmax router scores s, the
  top_k experts by s, each weighted by its score (not renormalized, so with top_k=1 the router still learns), and
  the auxiliary loss aux_loss_coef · E · Σ_i f_i · P_i, where f_i is the fraction of the N·top_k assignments of
  the batch that went to expert i and P_i the mean router probability of expert i (= aux_loss_coef at a perfectly
  balanced router).
- `bias` (auxiliary-loss-free, Wang et al. 2024; DeepSeek-V3): sigmoid scores s, the top_k experts by s + b, where b
  is a per-expert bias used for the selection only, each weighted by s renormalized over the chosen experts. After
  every optimizer step b_i += bias_rate · sign(mean load − load_i) over the step's assignments (all micro-batches
  and processes): overloaded experts become less likely, underloaded ones more. No gradient, no loss term; b is a
  buffer, saved and resumed with the weights.

Size (`match`), against the dense SwiGLU of the same d_model, hidden_mult and multiple_of (hidden width h, 3·d·h
weights): each expert, routed or shared, has hidden width h / (n_experts + shared_experts) with `match=params` (the
experts together hold the dense layer's weights) or h / (top_k + shared_experts) with `match=flops` (the experts a
token passes through cost the dense layer's FLOPs), rounded to the nearest multiple of `multiple_of` (at least
one). The router's d·n_experts weights are not part of the match.

`capacity_factor` > 0 (training only; 0: no limit) caps each expert at ceil(capacity_factor · N·top_k / n_experts)
assignments per forward (Switch): the assignments past it, in token order, are dropped (the token keeps its other
experts and the residual). Evaluation and decoding never drop.

Forward: the N·top_k (token, expert) assignments sorted by expert, each expert's matmuls on its contiguous slice —
one grouped GEMM (`torch.nn.functional.grouped_mm`) where torch documents it (bfloat16 on CUDA, compute capability
8.0+: training under autocast), else a loop over the experts' slices (CPU, float32/float64).

Logged (`metrics()`, over the optimizer steps since the last train row, global batch): `load/<i>` each expert's
share of the assignments, `imbalance` the mean over steps of max_i load_i / mean load (1: balanced; at most
n_experts/top_k), and `drop` the fraction of assignments dropped (with a capacity).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ablate.components import FeedForward, ModelSpec
from ablate.model.ffn import gated_hidden_size

BALANCES = ("aux_loss", "bias")
MATCHES = ("params", "flops")


def expert_hidden_size(d_model: int, hidden_mult: float, multiple_of: int, n_experts: int, top_k: int,
                       shared_experts: int, match: str) -> int:
    """Each expert's hidden width: the dense SwiGLU's width over the experts that share its weights (`params`:
    all of them) or its FLOPs (`flops`: those a token passes through), rounded to the nearest multiple_of."""
    dense = gated_hidden_size(d_model, hidden_mult, multiple_of)
    experts = n_experts + shared_experts if match == "params" else top_k + shared_experts
    return max(multiple_of, multiple_of * round(dense / experts / multiple_of))


def grouped_matmul(x: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor, grouped: bool) -> torch.Tensor:
    """x: (M, a) rows sorted by group, weights: (G, a, b), counts: (G,) rows per group -> (M, b), each group's
    rows times its own matrix: torch's grouped GEMM (`grouped`: one kernel, no host sync) or a loop over groups."""
    weights = weights.to(x.dtype)
    if grouped:
        return F.grouped_mm(x.contiguous(), weights, offs=counts.cumsum(0).to(torch.int32))
    slices = x.split(counts.tolist())
    return torch.cat([rows @ weights[group] for group, rows in enumerate(slices)])


def grouped_gemm_fits(x: torch.Tensor) -> bool:
    """Where torch documents its grouped GEMM: bfloat16 on CUDA devices of compute capability 8.0 or newer (rows
    of a multiple of 16 bytes)."""
    return (hasattr(F, "grouped_mm") and x.is_cuda and x.dtype == torch.bfloat16 and x.shape[-1] % 8 == 0
            and torch.cuda.get_device_capability(x.device) >= (8, 0))


class MoE(FeedForward):
    def __init__(self, spec: ModelSpec, n_experts: int = 8, top_k: int = 2, shared_experts: int = 1,
                 balance: str = "aux_loss", match: str = "params", hidden_mult: float = 4.0, multiple_of: int = 8,
                 aux_loss_coef: float = 0.01, bias_rate: float = 0.01, capacity_factor: float = 0.0):
        super().__init__(spec)
        d = spec.d_model
        self.n_experts, self.top_k, self.balance = n_experts, top_k, balance
        self.aux_loss_coef, self.bias_rate, self.capacity_factor = aux_loss_coef, bias_rate, capacity_factor
        self.hidden = expert_hidden_size(d, hidden_mult, multiple_of, n_experts, top_k, shared_experts, match)
        self.router = nn.Linear(d, n_experts, bias=False)
        # stacked expert weights (E, in, out); N(0, init_std) as nn.Linear gets, the output ones scaled like every
        # residual output projection (TransformerLM._init_weights initializes nn.Linear modules only)
        std, out_std = spec.init_std, spec.init_std / math.sqrt(2 * spec.n_layers)
        self.w_gate = nn.Parameter(torch.randn(n_experts, d, self.hidden) * std)
        self.w_up = nn.Parameter(torch.randn(n_experts, d, self.hidden) * std)
        self.w_down = nn.Parameter(torch.randn(n_experts, self.hidden, d) * out_std)
        # S shared experts of width h are one SwiGLU of width S·h (their hidden units are disjoint)
        self.shared = None
        if shared_experts:
            width = shared_experts * self.hidden
            self.shared = nn.ModuleDict({"gate": nn.Linear(d, width, bias=False),
                                         "up": nn.Linear(d, width, bias=False),
                                         "down": nn.Linear(width, d, bias=False)})
            self.shared["down"].is_residual_output = True
        if balance == "bias":
            self.register_buffer("selection_bias", torch.zeros(n_experts))
        self.last_aux: torch.Tensor | None = None
        self.step_counts: torch.Tensor | None = None  # assignments per expert since the last optimizer step
        self.step_drops: torch.Tensor | None = None
        self.stats: dict[str, torch.Tensor] = {}  # summed over the optimizer steps since the last metrics()

    @classmethod
    def check(cls, spec: ModelSpec, knobs: dict) -> list[str]:
        k, problems = knobs, []
        if k["n_experts"] < 1:
            problems.append(f"ffn.n_experts={k['n_experts']} must be >= 1")
        elif not 1 <= k["top_k"] <= k["n_experts"]:
            problems.append(f"ffn.top_k={k['top_k']} must be between 1 and ffn.n_experts={k['n_experts']}")
        if k["shared_experts"] < 0:
            problems.append(f"ffn.shared_experts={k['shared_experts']} must be >= 0")
        if k["balance"] not in BALANCES:
            problems.append(f"ffn.balance={k['balance']} must be one of: {', '.join(BALANCES)}")
        if k["match"] not in MATCHES:
            problems.append(f"ffn.match={k['match']} must be one of: {', '.join(MATCHES)}")
        if k["hidden_mult"] <= 0:
            problems.append(f"ffn.hidden_mult={k['hidden_mult']:g} must be > 0")
        if k["multiple_of"] < 1:
            problems.append(f"ffn.multiple_of={k['multiple_of']} must be a positive integer")
        for knob in ("aux_loss_coef", "bias_rate", "capacity_factor"):
            if not (k[knob] >= 0 and math.isfinite(k[knob])):
                problems.append(f"ffn.{knob}={k[knob]:g} must be >= 0 and finite")
        if spec.bias:
            problems.append("ffn=moe has no bias terms: set model.bias=false")
        return problems

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, d) -> (scores (N, E) in float32 or wider, chosen experts (N, top_k), their weights (N, top_k))."""
        logits = self.router(x)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision routes in float32
        if self.balance == "bias":
            scores = torch.sigmoid(logits)
            experts = (scores + self.selection_bias).topk(self.top_k, dim=-1).indices
            weights = scores.gather(-1, experts)
            weights = weights / weights.sum(-1, keepdim=True)
        else:
            scores = torch.softmax(logits, dim=-1)
            experts = scores.topk(self.top_k, dim=-1).indices
            weights = scores.gather(-1, experts)
        return scores, experts, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        scores, experts, weights = self.route(flat)
        assigned = experts.flatten()  # assignment j = (token j // top_k, expert assigned[j])
        order = assigned.argsort(stable=True)  # by expert, token order within each expert
        counts = torch.bincount(assigned, minlength=self.n_experts)
        token = order // self.top_k
        rows = flat[token]
        if torch.is_autocast_enabled(x.device.type):  # the experts compute as autocast's linear layers would
            rows = rows.to(torch.get_autocast_dtype(x.device.type))
        grouped = grouped_gemm_fits(rows) and self.hidden % 8 == 0
        hidden = F.silu(grouped_matmul(rows, self.w_gate, counts, grouped)) * \
            grouped_matmul(rows, self.w_up, counts, grouped)
        gate = weights.flatten()[order].to(x.dtype)
        dropped = None
        if self.training and self.capacity_factor > 0:
            capacity = math.ceil(self.capacity_factor * assigned.numel() / self.n_experts)
            first_of_expert = counts.cumsum(0) - counts
            rank_in_expert = torch.arange(order.numel(), device=x.device) - first_of_expert[assigned[order]]
            kept = rank_in_expert < capacity
            gate, dropped = gate * kept, (~kept).sum()
        expert_out = grouped_matmul(hidden, self.w_down, counts, grouped).to(x.dtype)
        out = torch.zeros_like(flat).index_add_(0, token, expert_out * gate[:, None])
        if self.shared is not None:
            out = out + self.shared["down"](F.silu(self.shared["gate"](flat)) * self.shared["up"](flat))
        if self.training:
            self._record(scores, counts, dropped)
        else:
            self.last_aux = None
        return out.reshape(shape)

    def _record(self, scores: torch.Tensor, counts: torch.Tensor, dropped: torch.Tensor | None) -> None:
        """The aux loss of this forward, and its assignments for the next optimizer step (no host sync)."""
        if self.balance == "aux_loss" and self.aux_loss_coef > 0:
            share = counts.to(scores.dtype) / counts.sum()
            self.last_aux = self.aux_loss_coef * self.n_experts * (share * scores.mean(0)).sum()
        else:
            self.last_aux = None
        counts = counts.detach().float()
        self.step_counts = counts if self.step_counts is None else self.step_counts + counts
        if dropped is not None:
            dropped = dropped.detach().float()
            self.step_drops = dropped if self.step_drops is None else self.step_drops + dropped

    def aux_loss(self) -> torch.Tensor | None:
        return self.last_aux

    @torch.no_grad()
    def after_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if self.step_counts is None:
            return
        counts = reduce(self.step_counts)  # the whole step's load, over micro-batches and processes
        if self.balance == "bias":
            self.selection_bias += self.bias_rate * torch.sign(counts.mean() - counts)
        step = {"counts": counts, "imbalance": counts.max() / counts.mean(), "steps": torch.ones_like(counts[0])}
        if self.step_drops is not None:
            step["drops"] = reduce(self.step_drops)
        self.stats = {key: self.stats[key] + value if key in self.stats else value for key, value in step.items()}
        self.step_counts = self.step_drops = None

    def metrics(self) -> dict[str, torch.Tensor]:
        stats, self.stats = self.stats, {}
        if not stats:
            return {}
        counts = stats["counts"]
        load = counts / counts.sum()
        values = {"imbalance": stats["imbalance"] / stats["steps"],
                  **{f"load/{i}": share for i, share in enumerate(load.unbind())}}
        if "drops" in stats:
            values["drop"] = stats["drops"] / counts.sum()
        return values

    def active_parameters(self) -> int:
        """The router, the shared experts and top_k routed experts."""
        per_expert = self.w_gate[0].numel() + self.w_up[0].numel() + self.w_down[0].numel()
        shared = sum(p.numel() for p in self.shared.parameters()) if self.shared is not None else 0
        return self.router.weight.numel() + shared + self.top_k * per_expert
