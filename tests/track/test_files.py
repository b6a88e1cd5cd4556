"""Run-dir files: written atomically, readable by collaborators (the user's umask, not mkstemp's private 0600)."""

from __future__ import annotations

import os
import stat

from ablate.track.files import atomic_write


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path):
    old = os.umask(0o022)
    try:
        (tmp_path / "plain.txt").write_text("x")
        atomic_write(tmp_path / "summary.json", "{}")
    finally:
        os.umask(old)
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == plain == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
