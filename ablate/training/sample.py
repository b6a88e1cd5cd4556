"""Text generation with temperature and nucleus (top-p) sampling."""

from __future__ import annotations

import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """logits: (V,) -> logits with everything outside the smallest set of tokens whose probability reaches top_p
    set to -inf (Holtzman et al., 2019). The most likely token always survives."""
    sorted_logits, order = logits.sort(descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches top_p
    sorted_logits[drop] = float("-inf")
    return torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)


@torch.no_grad()
def generate(
    model: torch.nn.Module, prompt: list[int], n_tokens: int, temperature: float, top_p: float, seed: int
) -> list[int]:
    """Extend `prompt` by n_tokens ids; the context is cropped to the model's block size."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    block_size = model.spec.block_size
    was_training = model.training
    model.eval()
    for _ in range(n_tokens):
        logits = model(ids[:, -block_size:])[0, -1].float()
        if temperature == 0:
            next_id = logits.argmax()
        else:
            probs = top_p_filter(logits / temperature, top_p).softmax(-1)
            next_id = torch.multinomial(probs, 1, generator=generator)[0]
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    model.train(was_training)
    return ids[0].tolist()
