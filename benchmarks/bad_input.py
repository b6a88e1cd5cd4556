"""The bad-input table: each input → exit code, the line(s) it prints, seconds to fail, and what it left on disk.

    python benchmarks/bad_input.py            # every case, one fresh working dir each (prints a Markdown table)

Every case runs `python -m ablate.run` (or a sweep) as a user would, offline, in an empty directory, so "left on
disk" is everything the command created there (Hydra's own outputs/ dir included).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = ["model=tiny", "train=smoke", "logger=none", "device=cpu"]
CASES = [
    ("unknown option", ["attention=gqaa"]),
    ("gqa heads", ["attention=gqa", "attention.n_kv_heads=3"]),
    ("impossible pair", ["pos_enc=relative", "attention=linear"]),
    ("knob type", ["attention=local", "attention.window=abc"]),
    ("unknown knob", ["+attention.n_kv_heads=2"]),
    ("class outside family", ["ffn._target_=torch.nn.Linear"]),
    ("code as a class", ["+model._target_=os.system"]),
    ("unknown tokenizer key", ["+tokenizer.vocab_size=100"]),
    ("lr nan", ["train.lr=nan"]),
    ("lr inf", ["train.lr=inf"]),
    ("betas out of range", ["train.betas=[2,3]"]),
    ("weight decay negative", ["train.weight_decay=-1"]),
    ("top_p", ["train.sample.top_p=0"]),
    ("dropout", ["dropout.p=1.5"]),
    ("eps", ["norm.eps=0"]),
    ("unknown train key", ["+train.foo=1"]),
    ("batch size type", ["train.batch_size=abc"]),
    ("heads do not divide", ["model.n_heads=6"]),
    ("device", ["device=tpu"]),
    ("missing data path", ["data=text", "data.path=/no/such/corpus"]),
    ("text without path", ["data=text"]),
    ("10-byte corpus", ["data=text", "data.path={tiny_file}"]),
    ("val fraction", ["data.val_fraction=0"]),
    ("sweep with one bad job", ["-m", "attention=gqa,linear", "pos_enc=relative"]),
]


def run_case(overrides: list[str]) -> tuple[int, str, float, str]:
    with tempfile.TemporaryDirectory() as work:
        tiny_file = Path(work).parent / "ablate-bad-input-10-bytes.txt"
        tiny_file.write_text("0123456789")
        args = [o.format(tiny_file=tiny_file) for o in overrides]
        flags, args = (["-m"], args[1:]) if args[:1] == ["-m"] else ([], args)
        env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "ABLATE_CACHE_DIR": f"{work}/.cache"}
        tic = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "ablate.run", *flags, *TINY, *args], cwd=work, env=env,
                                capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - tic
        lines = [line.split("] ", 1)[-1] for line in (result.stdout + result.stderr).splitlines()
                 if ("error" in line.lower() or "Could not" in line)
                 and "Set the environment variable HYDRA_FULL_ERROR" not in line]
        left = sorted(str(p.relative_to(work)) for p in Path(work).rglob("*") if ".cache" not in p.parts)
        files = [p for p in left if Path(work, p).is_file()]
        where = "nothing" if not left else f"{len(files)} files: " + ", ".join(files[:3]) + (" …" if len(files) > 3 else "")
        return result.returncode, " / ".join(lines[:2])[:160], seconds, where


def main() -> None:
    print("| input | exit | the line | s | left on disk |")
    print("|---|---|---|---|---|")
    for name, overrides in CASES:
        code, line, seconds, left = run_case(overrides)
        shown = " ".join(overrides).replace("|", "\\|")
        print(f"| {name}: `{shown}` | {code} | {line.replace('|', '/')} | {seconds:.1f} | {left} |", flush=True)


if __name__ == "__main__":
    main()
