from ablate.training.loop import train

__all__ = ["train"]
