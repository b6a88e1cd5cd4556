"""Multi-query associative recall (MQAR), as defined in Zoology (Arora et al., 2023, arXiv:2312.04927).

Each example of `seq_len` ids starts with `num_kv_pairs` key-value pairs (keys drawn without replacement from
[1, vocab_size/2), values from [vocab_size/2, vocab_size)); then every key is asked once more, at a distance
drawn from the paper's power law p(g) ~ g^(power_a - 1) over the free slots, so most queries come soon after the
pairs and a few far away. The target after a query is its key's value; every other target is -100, which
cross-entropy ignores, so loss and accuracy count query positions only. Other positions hold 0, or random ids
with `random_non_queries` (the paper's default). Constraints, as the paper's generator asserts: seq_len even,
vocab_size > seq_len, 4 * num_kv_pairs <= seq_len.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index


def check_mqar_config(data: DictConfig, block_size: int) -> list[str]:
    kv, seq, vocab = int(data.num_kv_pairs), int(data.seq_len), int(data.vocab_size)
    problems = []
    if kv < 1:
        problems.append(f"data.num_kv_pairs={kv} must be >= 1")
    if seq % 2:
        problems.append(f"data.seq_len={seq} must be even (pairs and query slots take two positions each)")
    if vocab <= seq:
        problems.append(f"data.vocab_size={vocab} must be > data.seq_len={seq} (Zoology's constraint)")
    if 4 * kv > seq:
        problems.append(f"data.num_kv_pairs={kv} needs data.seq_len >= {4 * kv} (4 x pairs: the pairs, then a slot "
                        "per query)")
    if seq > block_size:
        problems.append(f"data.seq_len={seq} exceeds model.block_size={block_size}; lower seq_len or raise block_size")
    if float(data.power_a) <= 0:
        problems.append(f"data.power_a={data.power_a} must be > 0 (1 = uniform query distances)")
    for name in ("num_train_examples", "num_val_examples"):
        if int(data[name]) < 1:
            problems.append(f"data.{name}={data[name]} must be >= 1")
    return problems


def distinct_per_row(rng: np.random.Generator, rows: int, k: int, n: int) -> np.ndarray:
    """(rows, k) ids from range(n), distinct within each row, uniform over ordered k-subsets.

    Draw with replacement, then redraw only the entries that repeat an earlier one in their row until none do.
    Every step treats all ids alike, so the result is uniform; and with k <= n/2 each redraw succeeds at least
    half the time, so it takes a few vectorized rounds instead of a Python loop over rows."""
    out = rng.integers(0, n, size=(rows, k))
    while True:
        order = np.argsort(out, axis=1, kind="stable")  # equal ids end up adjacent, earliest position first
        ranked = np.take_along_axis(out, order, axis=1)
        repeat_ranked = np.zeros_like(ranked, dtype=bool)
        repeat_ranked[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        if not repeat_ranked.any():
            return out
        repeat = np.zeros_like(repeat_ranked)
        np.put_along_axis(repeat, order, repeat_ranked, axis=1)
        out[repeat] = rng.integers(0, n, size=int(repeat.sum()))


def power_law_gaps(rng: np.random.Generator, rows: int, k: int, space: int, power_a: float) -> np.ndarray:
    """(rows, k) distinct slots in range(space), drawn without replacement with p(g) ~ (g+1)^(power_a - 1) (the
    paper's np.random.choice(replace=False, p=p)), via the equivalent Gumbel top-k trick, vectorized."""
    log_p = (power_a - 1) * np.log(np.arange(1, space + 1))
    scores = log_p + rng.gumbel(size=(rows, space))
    return np.argsort(-scores, axis=1)[:, :k]


@dataclass
class RecallExamples:
    inputs: np.ndarray  # (N, seq_len) ids
    query_positions: np.ndarray  # (N, k): where each key is asked
    values: np.ndarray  # (N, k): the answer (target) at that position

    def labels(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), seq_len) targets: the value at query positions, IGNORE_INDEX everywhere else."""
        labels = torch.full((len(rows), self.inputs.shape[1]), IGNORE_INDEX, dtype=torch.long)
        labels.scatter_(1, torch.from_numpy(self.query_positions[rows]), torch.from_numpy(self.values[rows]))
        return labels

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.inputs[rows].astype(np.int64)), self.labels(rows)


def multiquery_ar(rng: np.random.Generator, num_examples: int, seq_len: int, vocab_size: int, num_kv_pairs: int,
                  power_a: float = 0.01, random_non_queries: bool = True) -> RecallExamples:
    k, n = num_kv_pairs, num_examples
    context = 2 * k
    half = vocab_size // 2
    keys = 1 + distinct_per_row(rng, n, k, half - 1)  # 0 is the filler id, never a key
    values = half + distinct_per_row(rng, n, k, vocab_size - half)
    gaps = power_law_gaps(rng, n, k, (seq_len - context) // 2, power_a)
    query_positions = context + 2 * gaps  # queries sit on even offsets after the pairs

    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    inputs = np.zeros((n, seq_len), dtype=dtype)
    inputs[:, 0:context:2] = keys
    inputs[:, 1:context:2] = values
    if random_non_queries:
        inputs[:, context:] = rng.integers(0, vocab_size, size=(n, seq_len - context))
    np.put_along_axis(inputs, query_positions, keys, axis=1)
    return RecallExamples(inputs, query_positions.astype(np.int64), values.astype(np.int64))


class RecallBatches:
    """Training batches of whole examples: random rows (default) or the rows in order, pass after pass."""

    def __init__(self, examples: RecallExamples, batch_size: int, seed: int, sampling: str):
        self.examples, self.batch_size, self.sampling = examples, batch_size, sampling
        self.rng = np.random.default_rng(seed)
        self.position = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.examples.inputs)
        if self.sampling == "sequential":
            rows = (self.position + np.arange(self.batch_size)) % n
            self.position = int((self.position + self.batch_size) % n)
        else:
            rows = self.rng.integers(0, n, size=self.batch_size)
        return self.examples.batch(rows)

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "position": self.position}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.position = state["position"]


class RecallTokenizer:
    """Ids are the task's own symbols: text is whitespace-separated integers (anything else reads as the filler 0),
    so `train.sample` still works on this data."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.eot_id = None

    def encode(self, text: str) -> np.ndarray:
        ids = [int(w) if w.isdigit() and int(w) < self.vocab_size else 0 for w in text.split()]
        return np.asarray(ids or [0], dtype=np.int64)

    def decode(self, ids) -> str:
        return " ".join(str(int(i)) for i in ids)


@dataclass
class RecallData:
    """The MQAR task in TokenData's shape: the trainer asks it for batches the same way."""

    train_examples: RecallExamples
    val_examples: RecallExamples
    tokenizer: RecallTokenizer
    sampling: str
    seed: int
    cache_dir: None = None  # generated in memory in well under a second: nothing worth caching
    built: bool = True
    reports_recall: bool = True  # val/acc counts query positions only: report it as val/recall_acc too

    @property
    def train(self) -> np.ndarray:
        return self.train_examples.inputs.reshape(-1)

    @property
    def val(self) -> np.ndarray:
        return self.val_examples.inputs.reshape(-1)

    def train_batches(self, batch_size: int, block_size: int) -> RecallBatches:
        return RecallBatches(self.train_examples, batch_size, self.seed, self.sampling)

    def val_batches(self, n_batches: int, batch_size: int, block_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first n_batches * batch_size val examples (repeating if there are fewer): the same every eval."""
        rows = np.arange(n_batches * batch_size) % len(self.val_examples.inputs)
        return [self.val_examples.batch(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def load_recall(data: DictConfig) -> RecallData:
    """Train and val examples from independent streams of one seed (data.seed), so val never replays train."""
    train_rng, val_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(data.seed)).spawn(2))
    knobs = dict(seq_len=int(data.seq_len), vocab_size=int(data.vocab_size), num_kv_pairs=int(data.num_kv_pairs),
                 power_a=float(data.power_a), random_non_queries=bool(data.random_non_queries))
    return RecallData(
        train_examples=multiquery_ar(train_rng, int(data.num_train_examples), **knobs),
        val_examples=multiquery_ar(val_rng, int(data.num_val_examples), **knobs),
        tokenizer=RecallTokenizer(int(data.vocab_size)),
        sampling=str(data.get("sampling", "random")),
        seed=int(data.seed),
    )
