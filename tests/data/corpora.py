"""Small corpora for the data tests, made up here (nothing downloaded), and config helpers."""

from __future__ import annotations

import random

import ablate

WORDS = {
    "en": "the cat sat on a mat while small birds sang about rain and bread and the long road home".split(),
    "fr": "le chat dort près de la fenêtre pendant que la pluie tombe sur les toits de la ville".split(),
    "darija": "السلام عليكم شنو كتدير اليوم واش مشيتي للسوق ولا بقيتي فالدار مع الدراري".split(),
    "latin_darija": "salam labas 3lik wach nta mzyan ana ghadi l dar daba bghit nakol".split(),
}


def sentences(n: int, seed: int = 0) -> list[str]:
    """n short sentences mixing English, French and Moroccan Darija (Arabic and Latin script)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = WORDS[rng.choice(list(WORDS))]
        out.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + rng.choice([".", "!", "?", "؟"]))
    return out


def paragraphs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = sentences(n * 4, seed)
    return [" ".join(lines[i : i + rng.randint(2, 4)]) for i in range(0, len(lines), 4)]


def data_config(overrides: list[str]) -> tuple:
    """(data, tokenizer) configs as a run with these overrides would compose them."""
    cfg = ablate.compose(["model=tiny", *overrides])
    return cfg.data, cfg.tokenizer
