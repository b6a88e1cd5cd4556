from ablate.track.files import RunFiles, atomic_write, config_hash, load_run
from ablate.track.wandb_logger import NullLogger, WandbLogger, make_logger

__all__ = ["RunFiles", "atomic_write", "config_hash", "load_run", "NullLogger", "WandbLogger", "make_logger"]
