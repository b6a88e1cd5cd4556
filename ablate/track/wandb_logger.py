"""Weights & Biases as a mirror of metrics.jsonl: optional, never prompting, never blocking a run.

Mode: `WANDB_MODE` wins; else the config's `logger.mode`; `auto` means online only when credentials exist
(WANDB_API_KEY or a netrc entry for the W&B host) and the host (WANDB_BASE_URL's host and port) accepts a connection
within a few seconds, otherwise offline. An unreachable host, or an online start that fails, is decided once: the
process exports WANDB_MODE=offline, so the later jobs of a sweep (and the launcher's child processes) log offline at
once instead of each waiting for the network.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
import threading
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

X_AXES = ("step", "tokens", "time_s")
REACH_TIMEOUT_S = 3.0


def _address() -> tuple[str, int]:
    """The W&B server's host and port, from WANDB_BASE_URL (a self-hosted server may listen on any port)."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        port = url.port
    except ValueError:
        port = None
    return url.hostname or "api.wandb.ai", port or (80 if url.scheme == "http" else 443)


def _host() -> str:
    return _address()[0]


def go_offline(reason: str) -> None:
    """Log offline from now on, in this process and the processes it starts; said once."""
    log.warning("W&B: %s: logging offline for the rest of this sweep (`wandb sync` uploads the runs later)", reason)
    os.environ["WANDB_MODE"] = "offline"


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def host_reachable(timeout: float = REACH_TIMEOUT_S) -> bool:
    """A TCP connect to the W&B host and port, abandoned after `timeout` seconds even if DNS hangs."""
    result = []

    def probe() -> None:
        try:
            socket.create_connection(_address(), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def resolve_mode(configured: str) -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if configured != "auto":
        return configured
    if not has_credentials():
        return "offline"
    if not host_reachable():
        go_offline("credentials found but %s:%d is unreachable" % _address())
        return "offline"
    return "online"


class NullLogger:
    run_id: str | None = None

    def log(self, row: dict[str, Any]) -> None:
        pass

    def log_text(self, key: str, text: str) -> None:
        pass

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        pass


class WandbLogger(NullLogger):
    def __init__(self, run_dir: str, name: str, config: dict[str, Any], settings: dict[str, Any], run_id: str | None,
                 concurrent: bool = False):
        import wandb

        self.mode = resolve_mode(str(settings.get("mode", "auto")))
        self.run = wandb.init(
            project=settings.get("project") or "ablate",
            entity=settings.get("entity"),
            group=settings.get("group"),
            job_type=settings.get("job_type") or "train",
            tags=list(settings.get("tags") or []),
            name=name,
            id=run_id,
            resume="allow" if run_id else None,
            config=config,
            dir=run_dir,
            mode=self.mode,
            # a multirun job never inherits the previous job's run; an ensemble's members are open side by side
            reinit="create_new" if concurrent else "finish_previous",
            settings=wandb.Settings(console="off", init_timeout=30, silent=True),
        )
        self.run_id = self.run.id
        for axis in X_AXES:
            self.run.define_metric(axis)
        for prefix in ("train/*", "val/*", "perf/*", "lr"):
            self.run.define_metric(prefix, step_metric="step")
        self.failed = False

    def _safe(self, fn, *args, **kwargs) -> None:
        """A W&B problem is reported once and then ignored: the local files are the record."""
        if self.failed:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - logging must never stop training
            self.failed = True
            log.warning("W&B logging stopped (%s); metrics.jsonl still has everything", e)

    def log(self, row: dict[str, Any]) -> None:
        self._safe(self.run.log, row)

    def log_text(self, key: str, text: str) -> None:
        import wandb

        self._safe(self.run.log, {key: wandb.Html(f"<pre>{_escape(text)}</pre>")})

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        def close() -> None:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))})
            self.run.finish(exit_code=exit_code)

        self._safe(close)
        if self.mode == "offline":
            print(f"W&B offline run: upload it with `wandb sync {self.run.dir.rsplit('/files', 1)[0]}`")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def make_logger(logger_cfg: dict[str, Any], run_dir: str, name: str, config: dict[str, Any], run_id: str | None,
                concurrent: bool = False):
    if logger_cfg.get("name") != "wandb":
        return NullLogger()
    try:
        return WandbLogger(run_dir, name, config, logger_cfg, run_id, concurrent)
    except Exception as e:  # noqa: BLE001 - W&B is a mirror: a run goes on without it
        if resolve_mode(str(logger_cfg.get("mode", "auto"))) == "online":
            go_offline(f"the online start failed ({e})")
            return make_logger(logger_cfg, run_dir, name, config, run_id, concurrent)
        log.warning("W&B could not start (%s); logging to local files only", e)
        return NullLogger()
