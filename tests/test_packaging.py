"""A non-editable install works: the wheel carries the configs, and `python -m ablate.run` (one run and a sweep through
ablate's sweeper) runs from a directory that is not the repo. The wheel is unpacked, not pip-installed, to keep the
test offline and fast; the unpacked dir goes first on PYTHONPATH, so it wins over this checkout's editable install
(asserted, not assumed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import TINY
from tests.fixtures.variants import REPO_ROOT

pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools in this environment")


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: setuptools builds in the tree, and a stale build/ there could hide a missing file
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "outputs", "multirun", "wandb", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True)
    (wheel,) = out.glob("ablate-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    return site


def run_from_elsewhere(site, cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_wheel_holds_every_config(unpacked_wheel):
    in_repo = sorted(p.relative_to(REPO_ROOT / "conf") for p in (REPO_ROOT / "conf").rglob("*.yaml"))
    in_wheel = sorted(p.relative_to(unpacked_wheel / "ablate" / "conf")
                      for p in (unpacked_wheel / "ablate" / "conf").rglob("*.yaml"))
    assert in_wheel == in_repo and in_repo


def test_installed_package_runs_from_any_directory(unpacked_wheel, tmp_path):
    where = run_from_elsewhere(unpacked_wheel, tmp_path, "-c", "import ablate; print(ablate.CONF_DIR)")
    assert where.stdout.strip() == str(unpacked_wheel / "ablate" / "conf"), where.stderr

    job = run_from_elsewhere(unpacked_wheel, tmp_path, "-m", "ablate.run", "--cfg", "job", "attention=gqa")
    assert job.returncode == 0, job.stderr
    assert "n_kv_heads" in job.stdout

    sweep = run_from_elsewhere(unpacked_wheel, tmp_path, "-m", "ablate.run", "-m", *TINY, "attention=mha,mqa",
                               "train.max_steps=4", "train.eval_every=2")
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    summaries = sorted((tmp_path / "multirun").rglob("summary.json"))
    assert len(summaries) == 2
    assert len(list((tmp_path / "multirun").rglob("manifest.json"))) == 1  # ablate's sweeper ran, from the wheel
