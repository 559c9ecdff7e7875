"""The stream worker's collector policy: survivors are frozen, and frozen cycles that
became garbage are still reclaimed by the periodic full collection."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from services.stream.heap import FrozenHeap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()
    gc.collect()


def garbage_cycle_frozen_by(heap: FrozenHeap) -> weakref.ref[Node]:
    """A two-node cycle alive when ``heap.settle()`` runs, garbage right after."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    heap.settle()
    del first, second
    return alive


def test_survivors_are_frozen_and_left_alone_until_a_full_collection_is_due() -> None:
    heap = FrozenHeap(full_interval=3600)
    alive = garbage_cycle_frozen_by(heap)
    assert gc.get_freeze_count() > 0
    heap.settle()
    gc.collect()  # even an explicit full collection skips frozen objects
    assert alive() is not None


def test_a_due_full_collection_reclaims_frozen_cycles() -> None:
    heap = FrozenHeap(full_interval=0.01)
    alive = garbage_cycle_frozen_by(heap)
    time.sleep(0.02)
    heap.settle()
    assert alive() is None


def test_the_full_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="full_interval"):
        FrozenHeap(full_interval=0)
