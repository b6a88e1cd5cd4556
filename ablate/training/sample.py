"""Text generation with temperature and nucleus (top-p) sampling, from a prompt the config gives or, by default,
the first words of the data's val split (a run on stories starts a story, one on code starts code)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from ablate.components import DecodeCache

PROMPT_CHARS = 24  # a default prompt's length at most: a few words, whole ones


def data_prompt(val: np.ndarray, tokenizer: Any) -> str:
    """The first words of the val split's first non-blank line, whole words up to PROMPT_CHARS characters (a
    longer first word is cut there), with the space that follows them: the model continues mid-line."""
    text = tokenizer.decode(val[: 4 * PROMPT_CHARS].tolist())
    line = next((line for line in text.splitlines() if line.strip()), "")
    words = re.findall(r"\s*\S+\s?", line.rstrip())
    prompt = ""
    for word in words:
        if len(prompt + word.rstrip()) > PROMPT_CHARS:
            break
        prompt += word
    return prompt or line[:PROMPT_CHARS] or text[:PROMPT_CHARS]


def sample_prompt(configured: str | None, val: np.ndarray, tokenizer: Any) -> tuple[str, str]:
    """(the prompt, where it came from): train.sample.prompt when set, else the val split's first words."""
    if configured is not None:
        return configured, "train.sample.prompt"
    return data_prompt(val, tokenizer), "the first words of the val split; set train.sample.prompt to choose"


def sample_file(prompt: str, source: str, text: str) -> str:
    """sample.txt: a first line naming the prompt (quoted, so its spaces and newlines show) and its source, then
    the generated text, prompt included."""
    return f"# prompt {prompt!r} ({source})\n{text}"


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
    """Extend `prompt` by n_tokens ids, decoding with the model's cache (`TransformerLM.decode`); the context is
    cropped to the model's block size: once the sequence is longer, each step starts a new cache from its last
    block_size tokens, so every step sees exactly what a full forward over the cropped context sees."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    block_size = model.spec.block_size
    was_training = model.training
    model.eval()
    cache = DecodeCache()
    logits = model.decode(ids[:, -block_size:], cache)
    for _ in range(n_tokens):
        last = logits[0, -1].float()
        if temperature == 0:
            next_id = last.argmax()
        else:
            probs = top_p_filter(last / temperature, top_p).softmax(-1)
            next_id = torch.multinomial(probs, 1, generator=generator)[0]
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
        if cache.start < block_size:
            logits = model.decode(next_id.view(1, 1), cache)
        else:
            cache = DecodeCache()
            logits = model.decode(ids[:, -block_size:], cache)
    model.train(was_training)
    return ids[0].tolist()
