"""W&B as a mirror: the offline run holds what metrics.jsonl holds; mode selection never needs a server.
No W&B server exists here: runs are offline (a real wandb.init in offline mode, nothing mocked)."""

from __future__ import annotations

import netrc
import os
import socketserver
import threading

import pytest

import ablate
from ablate.track import wandb_logger
from tests.track.wandb_records import history_rows, read_records


def test_offline_run_mirrors_metrics(tmp_path, tiny_overrides, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = [o for o in tiny_overrides if not o.startswith("logger")] + ["logger=wandb", "attention=mqa"]
    cfg = ablate.compose([*overrides, f"out_dir={tmp_path / 'run'}", "logger.group=g1", "logger.tags=[t1]"])
    ablate.train(cfg, overrides)
    _, rows, _ = ablate.load_run(tmp_path / "run")
    logs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1
    history = history_rows(logs[0])
    assert [r["val/loss"] for r in history if "val/loss" in r] == [r["val/loss"] for r in rows if "val/loss" in r]
    assert [r["train/loss"] for r in history if "train/loss" in r] == [
        r["train/loss"] for r in rows if "train/loss" in r]

    records = read_records(logs[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == "attention=mqa,data.max_bytes=3000000,model=tiny,train=smoke"
    assert run.run_group == "g1" and list(run.tags) == ["t1"] and run.job_type == "train"
    config = {item.key: item.value_json for item in run.config.update}
    assert config["attention"] == '"mqa"' and config["pos_enc"] == '"learned"'  # group choices as top-level keys
    declared = {r.metric.name for r in records if r.WhichOneof("record_type") == "metric" and r.metric.name}
    assert {"step", "tokens", "time_s"} <= declared
    step_metrics = {r.metric.glob_name: r.metric.step_metric for r in records
                    if r.WhichOneof("record_type") == "metric" and r.metric.glob_name}
    assert step_metrics["val/*"] == "step"


def test_mode_env_wins(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_logger.resolve_mode("online") == "disabled"


def test_no_credentials_means_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "missing-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_logger.resolve_mode("auto") == "offline"
    assert wandb_logger.resolve_mode("online") == "online"  # an explicit choice is respected


def test_credentials_but_unreachable_host_goes_offline_fast(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://127.0.0.1:9")  # nothing listens on the discard port
    assert wandb_logger.resolve_mode("auto") == "offline"


def test_unreachable_is_decided_once_for_the_rest_of_the_sweep(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "https://127.0.0.1:9")
    assert wandb_logger.resolve_mode("auto") == "offline"
    assert os.environ["WANDB_MODE"] == "offline"  # later jobs and child processes skip the probe


def test_a_self_hosted_server_on_its_own_port_is_reachable(monkeypatch):
    """A real local TCP server stands in for a self-hosted W&B on port != 443."""
    server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert wandb_logger.resolve_mode("auto") == "online"
    finally:
        server.shutdown()
        server.server_close()


def test_netrc_entry_counts_as_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    rc = tmp_path / ".netrc"
    rc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    rc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(rc))
    assert netrc.netrc(str(rc)).authenticators("api.wandb.ai") is not None
    assert wandb_logger.has_credentials()


def test_wandb_init_failure_falls_back_to_files(monkeypatch, tmp_path):
    import wandb

    def refuse(*args, **kwargs):  # stands in for a W&B that cannot start: there is no server here
        raise wandb.errors.UsageError("no server")

    monkeypatch.setattr(wandb, "init", refuse)
    logger = wandb_logger.make_logger({"name": "wandb", "mode": "offline"}, str(tmp_path), "n", {}, None)
    assert isinstance(logger, wandb_logger.NullLogger) and not isinstance(logger, wandb_logger.WandbLogger)


@pytest.mark.parametrize("name", ["none"])
def test_logger_none_writes_no_wandb_dir(tmp_path, tiny_overrides, name):
    ablate.train(ablate.compose([*tiny_overrides, f"logger={name}", f"out_dir={tmp_path / 'run'}"]))
    assert not (tmp_path / "run" / "wandb").exists()
