"""Left-padded KV rows: join, leave, trim."""

from __future__ import annotations

import numpy as np

from app.runtimes.kv import NumpyKV


def cache(rows: int, width: int, start: float = 0.0) -> NumpyKV:
    keys = np.arange(rows * 2 * width * 3, dtype=np.float32).reshape(rows, 2, width, 3) + start
    return NumpyKV([(keys, keys + 0.5), (keys * 2, keys * 2 + 0.5)])


def test_extend_pads_the_narrower_side_on_the_left() -> None:
    running, joining = cache(2, 5), cache(1, 3, start=1000)
    both = running.extend(joining)
    assert (both.rows, both.width) == (3, 5)
    assert np.array_equal(both.layers[0][0][:2], running.layers[0][0])
    assert not both.layers[0][0][2, :, :2].any()  # two zero columns before its own three
    assert np.array_equal(both.layers[0][0][2, :, 2:], joining.layers[0][0][0])
    wider = joining.extend(running)  # the batch grows wider for a longer newcomer
    assert (wider.rows, wider.width) == (3, 5)
    assert not wider.layers[1][1][0, :, :2].any()


def test_select_keeps_rows_in_order_and_trim_drops_leading_columns() -> None:
    kv = cache(3, 4)
    kept = kv.select([2, 0]).trim(1)
    assert (kept.rows, kept.width) == (2, 3)
    assert np.array_equal(kept.layers[1][0][0], kv.layers[1][0][2, :, 1:])
    assert kv.trim(0) is kv
    assert kv.widen(2) is kv
    assert len(kv.flat()) == 4
    assert NumpyKV.from_flat(kv.flat()).width == 4


def test_torch_layers_grow_in_place_and_hold_what_cat_would() -> None:
    import torch

    from app.runtimes.torch_kv import GrowingLayer

    keys = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    layer = GrowingLayer(keys, keys + 1)
    steps = [torch.full((2, 3, 1, 5), float(-i)) for i in range(3)]
    grown = [layer.update(step, step)[0] for step in steps]
    assert torch.equal(grown[-1], torch.cat([keys, *steps], dim=2))
    assert grown[1].data_ptr() == grown[2].data_ptr()  # the same buffer, written in place
    assert grown[0].data_ptr() != keys.data_ptr()  # the first step moved it to a buffer
