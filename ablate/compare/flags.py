"""Suspicious-run checks: results that more often mean a bug (leaky eval, wrong targets) than a finding.

Losses are cross-entropy in nats per token. Each rule is a plain threshold, stated in its message:
- val far below train: final val loss < 0.8 × final train loss. Dropout and the lag of a windowed train
  mean make val a little lower than train; 20% lower suggests val data the model has seen, or a mask leak in eval.
- overfitting: final train loss < 0.5 × final val loss while val has stalled (improved < 1% over the second
  half of training) or risen (> 2% above its best).
- accuracy implausible for the loss: val accuracy more than 0.15 above the Fano bound for the loss. A model whose
  predictive entropy equals its loss L cannot be right more often than the a that solves
  H_b(1 − a) + (1 − a)·ln(V − 1) = L (V = vocab size); far above it, accuracy and loss disagree (accuracy counted
  on the wrong targets or padding, a loss reduced wrongly, or confidently wrong logits). The margin spares barely
  trained models: their loss is still near ln V while their argmax already hits a frequent token (a space is
  ~10–20% of bytes).
"""

from __future__ import annotations

import math

from ablate.compare.load import Run, as_number

VAL_BELOW_TRAIN = 0.8
TRAIN_COLLAPSE = 0.5
STALL_GAIN = 0.01
RISE_FROM_BEST = 1.02
ACC_MARGIN = 0.15


def run_flags(run: Run) -> list[str]:
    if run.status in ("diverged", "failed"):
        return []  # their last numbers are from before they stopped; the status already says what went wrong
    flags = []
    val, train = run.number("final/val_loss"), run.number("final/train_loss")
    if val is not None and train is not None:
        if val < VAL_BELOW_TRAIN * train:
            flags.append(f"val loss far below train ({val:.3f} < {VAL_BELOW_TRAIN} × {train:.3f})")
        if train < TRAIN_COLLAPSE * val and _val_stalled(run):
            flags.append(f"overfitting: train loss {train:.3f} collapsing while val stalls at {val:.3f}")
    acc = run.number("final/val_acc")
    vocab = vocab_size(run)
    if val is not None and acc is not None and vocab:
        bound = fano_max_accuracy(val, vocab)
        if acc > bound + ACC_MARGIN:
            flags.append(f"val accuracy {acc:.3f} implausible for loss {val:.3f} (Fano bound {bound:.3f})")
    if run.status == "running":
        flags.append("still running (or killed): results are partial")
    return flags


def _val_stalled(run: Run) -> bool:
    evals = [(r["step"], v) for r in run.rows
             if (v := as_number(r.get("val/loss"))) is not None and math.isfinite(v) and "step" in r]
    if len(evals) < 3:
        return False
    final_step, final = evals[-1]
    half = min(evals, key=lambda e: abs(e[0] - final_step / 2))[1]
    best = min(v for _, v in evals)
    return final > (1 - STALL_GAIN) * half or final > RISE_FROM_BEST * best


def fano_max_accuracy(loss: float, vocab: int) -> float:
    """Largest accuracy a with H_b(1 − a) + (1 − a)·ln(V − 1) ≥ loss (bisection; the left side rises in the error)."""
    if vocab < 2:
        return 1.0
    max_error = (vocab - 1) / vocab
    if loss >= math.log(vocab):
        return 1.0 - max_error
    lo, hi = 0.0, max_error
    for _ in range(60):
        mid = (lo + hi) / 2
        if _fano(mid, vocab) < loss:
            lo = mid
        else:
            hi = mid
    return 1.0 - hi


def _fano(error: float, vocab: int) -> float:
    binary = 0.0 if error in (0.0, 1.0) else -error * math.log(error) - (1 - error) * math.log(1 - error)
    return binary + error * math.log(vocab - 1)


def vocab_size(run: Run) -> int | None:
    """From the resolved config: tokenizer.vocab_size if written there, else what the tokenizer registry says."""
    tokenizer = run.config.get("tokenizer") or {}
    if isinstance(tokenizer.get("vocab_size"), int):
        return tokenizer["vocab_size"]
    try:
        from omegaconf import OmegaConf

        from ablate.data.tokenizer import vocab_size_for

        return int(vocab_size_for(OmegaConf.create(tokenizer)))
    except (ImportError, KeyError, AttributeError, TypeError, ValueError):  # unknown tokenizer: skip, never guess
        return None
