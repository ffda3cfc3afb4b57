from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from app.batching.policy import select_batch


@dataclass
class Item:
    tokens: int
    rows: int = 1
    key: Hashable = None
    name: str = ""


def names(batch: list[Item]) -> list[str]:
    return [item.name for item in batch]


def test_oldest_always_goes_first_even_when_long() -> None:
    waiting = [Item(200, name="long")] + [Item(5, name=f"s{i}") for i in range(10)]
    batch = select_batch(waiting, max_batch_size=8, max_batch_tokens=400)
    assert batch[0].name == "long"
    assert len(batch) == 2  # 200 x 2 rows fills the 400-token budget


def test_nearest_lengths_share_a_batch() -> None:
    lengths = [10, 50, 11, 49, 9, 51, 12]
    waiting = [Item(n, name=str(n)) for n in lengths]
    assert names(select_batch(waiting, 4, 10_000)) == ["10", "9", "11", "12"]


def test_token_budget_counts_padding() -> None:
    waiting = [Item(8, name=str(i)) for i in range(5)]
    assert len(select_batch(waiting, 32, max_batch_tokens=20)) == 2  # 3 x 8 = 24 > 20
    assert len(select_batch(waiting, 32, max_batch_tokens=40)) == 5


def test_rows_count_toward_the_budget() -> None:
    waiting = [Item(10, rows=3, name="a"), Item(10, rows=3, name="b")]
    assert names(select_batch(waiting, 32, max_batch_tokens=59)) == ["a"]
    assert names(select_batch(waiting, 32, max_batch_tokens=60)) == ["a", "b"]


def test_a_longer_item_over_budget_does_not_block_shorter_ones() -> None:
    waiting = [Item(10, name="a"), Item(100, name="long"), Item(9, name="b")]
    assert names(select_batch(waiting, 8, max_batch_tokens=60)) == ["a", "b"]


def test_only_equal_keys_share_a_batch() -> None:
    waiting = [
        Item(5, key="de", name="1"),
        Item(5, key="fr", name="2"),
        Item(5, key="de", name="3"),
    ]
    assert names(select_batch(waiting, 8, 1000)) == ["1", "3"]


def test_size_limit_and_empty() -> None:
    assert len(select_batch([Item(1) for _ in range(10)], 3, 1000)) == 3
    assert select_batch([], 3, 1000) == []
    assert len(select_batch([Item(5000)], 3, max_batch_tokens=10)) == 1  # alone, whatever size


def test_min_fill_keeps_short_items_out_of_a_long_batch() -> None:
    waiting = [Item(256, name="long")] + [Item(12, name=f"s{i}") for i in range(20)]
    assert len(select_batch(waiting, 32, 8192)) == 21  # no fill rule: all padded to 256
    assert names(select_batch(waiting, 32, 8192, min_fill=0.5)) == ["long"]


def test_min_fill_groups_similar_lengths() -> None:
    lengths = [50, 12, 55, 10, 48, 11, 250]
    waiting = [Item(n, name=str(n)) for n in lengths]
    assert sorted(map(int, names(select_batch(waiting, 32, 8192, min_fill=0.5)))) == [48, 50, 55]
    short_first = [Item(n, name=str(n)) for n in [12, 50, 10, 55, 11]]
    assert sorted(map(int, names(select_batch(short_first, 32, 8192, min_fill=0.5)))) == [
        10,
        11,
        12,
    ]
