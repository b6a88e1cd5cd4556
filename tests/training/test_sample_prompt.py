"""The sample's prompt comes from the data (the val split's first words) unless train.sample.prompt names one, and
sample.txt says which prompt it was; the new default keeps the config hash of runs recorded with the old one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import ablate
from ablate.compare.keys import identity
from ablate.compare.load import Run
from ablate.config import validate
from ablate.spec import SpecError
from ablate.track import config_hash
from ablate.training.sample import data_prompt


class Utf8:
    """The byte tokenizer's contract: ids are UTF-8 bytes."""

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def ids(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)


@pytest.mark.parametrize(("val", "prompt"), [
    ('"""Simple class to read IFF chunks.\n\nAn IFF chunk', '"""Simple class to read '),  # code: 24 characters
    ("\n\n  \nOnce upon a time, there was a girl.", "Once upon a time, there "),  # blank lines are skipped
    ("Il était une fois\nune fille", "Il était une fois"),  # a short line: all of it
    ("+----------------------------------+\n| ID |", "+-----------------------"),  # one long word: cut
    ("12 5 33 8 91 2 4 77 65 3 1 9 0", "12 5 33 8 91 2 4 77 65 3 "),  # mqar's symbols
])
def test_the_prompt_is_the_first_words_of_the_val_split(val, prompt):
    assert data_prompt(ids(val), Utf8()) == prompt


def test_an_empty_prompt_is_refused():
    with pytest.raises(SpecError) as refused:
        validate(ablate.compose(["model=tiny", "train.sample.prompt=''"]))
    assert refused.value.problems == [
        "train.sample.prompt is empty: give some text, or null for the first words of the val split"]


def test_the_new_default_keeps_the_hash_runs_had_with_the_old_one():
    cfg = ablate.compose(["model=tiny"])
    assert cfg.train.sample.prompt is None
    recorded = OmegaConf.create(OmegaConf.to_container(cfg))
    recorded.train.sample.prompt = "def "  # the default before
    assert config_hash(recorded) == config_hash(cfg)
    recorded.train.sample.prompt = "Once upon"
    assert config_hash(recorded) != config_hash(cfg)


def test_runs_with_the_old_default_prompt_group_with_new_ones_in_compare():
    new = OmegaConf.to_container(ablate.compose(["model=tiny"]), resolve=True)
    old = json.loads(json.dumps(new))
    old["train"]["sample"]["prompt"] = "def "
    assert identity(Run(Path("old"), {}, old)) == identity(Run(Path("new"), {}, new))


@pytest.fixture(scope="module")
def novel(tmp_path_factory):
    """A 'novel': chapters as JSON lines, every one opening with the same sentence, so the val split does too."""
    root = tmp_path_factory.mktemp("novel")
    rng = np.random.default_rng(0)
    words = "the rain fell on the old house while she waited by the window for a letter".split()
    with open(root / "chapters.jsonl", "w", encoding="utf-8") as f:
        for chapter in range(40):
            body = " ".join(rng.choice(words, 400))
            f.write(json.dumps({"text": f"It was a dark and stormy night in chapter {chapter}.\n{body}"}) + "\n")
    return root


@pytest.mark.parametrize(("given", "prompt", "source"), [
    (None, "It was a dark and stormy ", "the first words of the val split; set train.sample.prompt to choose"),
    ("'She '", "She ", "train.sample.prompt"),
])
def test_sample_txt_names_its_prompt(tmp_path, novel, given, prompt, source):
    overrides = ["model=tiny", "train=smoke", "logger=none", "device=cpu", "data=text", f"data.path={novel}",
                 "data.val_fraction=0.25", f"data.cache_dir={tmp_path / 'cache'}",
                 *([f"train.sample.prompt={given}"] if given else [])]
    summary = ablate.train(ablate.compose([*overrides, f"out_dir={tmp_path / 'run'}"]), overrides)
    assert summary["status"] == "completed"
    header, text = (tmp_path / "run" / "sample.txt").read_text().split("\n", 1)
    assert header == f"# prompt {prompt!r} ({source})"
    assert text.startswith(prompt) and len(text) > len(prompt)
