"""A launcher or sweeper from an extra that is not installed is named with its pip line, before anything runs.
The test environment has every extra installed, so the child process hides one plugin with an import blocker
(the one thing mocked here: an environment without that extra)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ablate.extras import PLUGINS, missing_extras

HIDE_AND_RUN = """
import sys
from importlib.abc import MetaPathFinder

class Hide(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, Hide())
sys.argv = ["ablate-run", *{args!r}]
from ablate.run import main
main()
"""


@pytest.mark.parametrize(("group", "option"), sorted(PLUGINS))
def test_missing_extra_is_named_before_anything_runs(group, option, tmp_path):
    module, extra = PLUGINS[group, option]
    args = ["-m", f"{group}={option}", "model=tiny", "train=smoke", "logger=none", "attention=mha,mqa"]
    proc = subprocess.run([sys.executable, "-c", HIDE_AND_RUN.format(module=module, args=args)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"config error: {group}={option} needs the `{extra}` extra: pip install 'ablate[{extra}]' "
        f"(or pip install -e '.[{extra}]' in a checkout)"]
    assert list(tmp_path.iterdir()) == []


def test_installed_extras_are_not_reported():
    """This environment has every extra (the `test` extra pulls them in): nothing to report."""
    assert missing_extras([f"{group}={option}" for group, option in PLUGINS] + ["attention=mha"]) == []
