"""The GitHub workflow runs the README's test command, and its smoke steps — console scripts, as a user types them —
work: they are run here exactly as written in the workflow."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixtures.variants import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"


def run_steps() -> dict[str, str]:
    (job,) = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    return {step["name"]: step["run"] for step in job["steps"] if "run" in step}


def test_workflow_runs_the_readme_test_command():
    assert run_steps()["Tests"] == "python -m pytest"
    assert "```bash\npip install -e . && python -m ablate.run" in (REPO_ROOT / "README.md").read_text()
    assert "python -m pytest" in (REPO_ROOT / "README.md").read_text()


def test_smoke_steps_run_as_written(tmp_path):
    steps = run_steps()
    scripts = Path(sys.executable).parent  # the console scripts of this environment
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    for name in ("Smoke sweep", "Compare"):
        argv = shlex.split(steps[name])
        assert shutil.which(argv[0], path=env["PATH"]), f"{argv[0]} is not installed as a console script"
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{name}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert len(list((tmp_path / "multirun" / "smoke").rglob("summary.json"))) == 4
    assert (tmp_path / "multirun" / "smoke" / "compare" / "summary.md").exists()
