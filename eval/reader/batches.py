"""Batches of training windows grouped by length, so a batch is padded only to its longest member.

Most SQuAD windows are far shorter than the window limit, so padding every batch to it wastes most of a
step. The order is seeded by (seed, epoch): the windows are shuffled, cut into buckets of many batches,
sorted by length inside a bucket, cut into batches, and the batches shuffled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.reader.features import Feature
from rag.answer.reader import pad_batch


def length_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, bucket_batches: int = 50) -> list[list[int]]:
    """One epoch's batches (lists of indices into ``lengths``), every index once."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    bucket = batch_size * bucket_batches
    batches = []
    for at in range(0, len(order), bucket):
        chunk = sorted(order[at : at + bucket], key=lambda i: (lengths[i], i))
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def tensors(features: Sequence[Feature], indices: Sequence[int]) -> dict:
    """The model inputs and targets of one batch as torch tensors, padded to its longest window."""
    import torch

    chosen = [features[i] for i in indices]
    batch = {k: torch.from_numpy(v) for k, v in pad_batch(chosen).items()}
    batch["start_positions"] = torch.tensor([f.start for f in chosen], dtype=torch.long)
    batch["end_positions"] = torch.tensor([f.end for f in chosen], dtype=torch.long)
    return batch
