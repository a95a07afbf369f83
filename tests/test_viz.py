"""Measurement helpers of ivlite.viz that the book's counts rest on."""

import torch

from ivlite.viz import CallLog, FrameCounter


def test_frame_counter_counts_positional_and_keyword_batches():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with FrameCounter(a, b) as count:
        a(torch.zeros(5, 3))
        a(input=torch.zeros(2, 3))   # diffusers models are often called by keyword
        b(torch.zeros(1, 3))
    assert count.frames == {0: 7, 1: 1}
    a(torch.zeros(4, 3))             # hooks are removed on exit
    assert count.frames == {0: 7, 1: 1}


def test_call_log_records_batch_and_grad_mode():
    lin = torch.nn.Linear(3, 2)
    with CallLog(lin) as log:
        lin(torch.zeros(2, 3))
        with torch.no_grad():
            lin(torch.zeros(3, 3))
    assert log.batch == [2, 3] and log.grad == [True, False]
