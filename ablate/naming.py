"""Names derived from a job's overrides: the W&B run name and the job's directory name. Both leave out the
recording-only keys (`ablate.spec.RECORDING_ONLY`), so a rerun with other logging lands in the same job dir."""

from __future__ import annotations

import hashlib
import re

from ablate.spec import RECORDING_ONLY, key_in

MAX_DIRNAME = 120  # well under every filesystem's 255-byte limit, with room for the job number and a hash
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+~@%:\[\]-]")


def _kept(overrides) -> list[str]:
    return sorted(str(o) for o in overrides if not key_in(str(o).split("=", 1)[0], RECORDING_ONLY))


def run_name(overrides) -> str:
    """The W&B run name: the job's overrides, sorted, e.g. `attention=gqa,pos_enc=rope,seed=1`."""
    return ",".join(sorted(o.lstrip("+~") for o in _kept(overrides))) or "defaults"


def job_dirname(overrides) -> str:
    """The overrides as one safe directory name: as Hydra's override_dirname writes them (`attention=gqa,seed=1`)
    when that is safe; otherwise (a `/`, a leading `.`, `..`, other characters a filesystem or shell may refuse,
    or too long) a readable cleaned prefix plus a hash of the full overrides, so names stay distinct."""
    text = ",".join(_kept(overrides))
    if not text:
        return ""  # Hydra's override_dirname of no overrides
    if not _UNSAFE.search(text) and ".." not in text and not text.startswith(".") \
            and len(text) <= MAX_DIRNAME:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("_", text).replace("..", "_").lstrip(".")[: MAX_DIRNAME - 11]
    return f"{readable}-{digest}" if readable else digest


MEMBER_GLOB = "seed=*"  # the run dirs of an ensemble job's members, inside the job's dir (train.ensemble_seeds)


def member_dirname(seed: int) -> str:
    """The run dir of one member of an ensemble job, inside the job's dir: `seed=<k>`."""
    return f"seed={seed}"


def member_overrides(overrides, seed: int) -> list[str]:
    """The overrides of the separate run of `seed` that an ensemble member records: the job's own without a seed,
    then `seed=<k>` (the ensemble's own key stays: recording-only, it leaves names and hashes alone)."""
    return [*(str(o) for o in overrides if str(o).split("=", 1)[0].lstrip("+~") != "seed"), f"seed={seed}"]
