from ablate.train.loop import train

__all__ = ["train"]
