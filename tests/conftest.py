"""Shared fixtures: every test runs offline, with a token cache shared across the session, on tiny configs."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def token_cache_dir(tmp_path_factory):
    """One token cache for the whole session, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("token-cache")
    os.environ["ABLATE_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Small corpus and budget for tests that train: seconds, not minutes.
TINY = ["model=tiny", "train=smoke", "logger=none", "data.max_bytes=3000000", "device=cpu"]


@pytest.fixture
def tiny_overrides():
    return list(TINY)
