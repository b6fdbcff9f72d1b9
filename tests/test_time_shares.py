"""Time shares: each phase's host time as a share of the interval between log lines."""
import pytest
import torch

from dqnfast import time_shares
from dqnfast.time_shares import PHASES, TimeShares


def test_shares_split_each_interval_and_an_open_block_across_two(monkeypatch):
    ticks = iter([0.0,  # made
                  1.0, 3.0,  # acting, 2 s
                  3.5, 4.0,  # updating (host time on the CPU), 0.5 s
                  4.0,  # logging begins...
                  5.0,  # ...and the interval ends inside it
                  7.0,  # logging ends: 2 s of it in the second interval
                  10.0])  # the second interval ends
    monkeypatch.setattr(time_shares.time, "perf_counter", lambda: next(ticks))
    shares = TimeShares(torch.device("cpu"))
    with shares.measure("acting"):
        pass
    with shares.updating():
        pass
    with shares.measure("logging"):
        assert shares.take() == dict(env_step=0.0, acting=0.4, adding=0.0, updating=0.1,
                                     logging=0.2)
    assert shares.take() == dict(env_step=0.0, acting=0.0, adding=0.0, updating=0.0,
                                 logging=0.4)


@pytest.mark.cuda
def test_updating_on_a_gpu_is_the_gpu_time():
    shares = TimeShares(torch.device("cuda"))
    with shares.updating():
        torch.cuda._sleep(100_000_000)  # queued: the host returns at once
    torch.cuda.synchronize()
    taken = shares.take()
    assert set(taken) == set(PHASES) and taken["updating"] > 0.0
