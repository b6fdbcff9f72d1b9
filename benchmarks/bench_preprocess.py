"""Frame preprocessing: dqnfast's one pass against the textbook path and OpenCV.

    python -m pytest benchmarks/bench_preprocess.py --benchmark-only

Real Pong and Breakout frame pairs (210x160 RGB) to 84x84 gray. Group
"preprocess-1-thread" times each path on one thread (torch and OpenCV both set
to one): the textbook's (the chapter's max of the pair, float32 gray and cv2 area
resize to 84x110 then crop), OpenCV on uint8 (``cvtColor`` then ``resize``
INTER_AREA), dqnfast's ``preprocess_frames``, and a plain copy of the input bytes
(the floor of any pass that reads them). Group "preprocess-threads" shows how
dqnfast scales with threads. ``extra_info["pairs_per_second"]`` holds the rates.
"""
import cv2
import numpy as np
import pytest
import torch

import dqnfast
from atari_frames import ale_frame_pairs
from textbook_loops import ProcessFrame84

PAIRS = 128


@pytest.fixture(scope="module")
def pairs():
    frames, prev = zip(*(ale_frame_pairs(game, count=PAIRS // 2, seed=1) for game in ("pong", "breakout")))
    return np.concatenate(frames), np.concatenate(prev)


@pytest.fixture
def one_thread():
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)


def textbook(frames, prev):
    return [ProcessFrame84.process(np.max(np.stack([a, b]), axis=0)) for a, b in zip(frames, prev)]


def opencv_uint8(frames, prev):
    return [cv2.resize(cv2.cvtColor(np.maximum(a, b), cv2.COLOR_RGB2GRAY), (84, 84),
                       interpolation=cv2.INTER_AREA) for a, b in zip(frames, prev)]


def dqnfast_pass(frames, prev, out):
    return dqnfast.preprocess_frames(frames, prev, out=out)


def copy_input(frames, prev, frames_copy, prev_copy):
    np.copyto(frames_copy, frames)
    np.copyto(prev_copy, prev)


def run(benchmark, fn, *args, rounds=20):
    benchmark.pedantic(fn, args=args, rounds=rounds, warmup_rounds=2, iterations=1)
    benchmark.extra_info["pairs_per_second"] = PAIRS / benchmark.stats.stats.median


@pytest.mark.benchmark(group="preprocess-1-thread")
@pytest.mark.parametrize("path", ["textbook", "opencv-uint8", "dqnfast", "copy-input"])
def test_preprocess_one_thread(benchmark, pairs, one_thread, path):
    frames, prev = pairs
    if path == "textbook":
        run(benchmark, textbook, frames, prev, rounds=5)
    elif path == "opencv-uint8":
        run(benchmark, opencv_uint8, frames, prev, rounds=10)
    elif path == "dqnfast":
        run(benchmark, dqnfast_pass, frames, prev, torch.empty((PAIRS, 84, 84), dtype=torch.uint8))
    else:
        run(benchmark, copy_input, frames, prev, np.empty_like(frames), np.empty_like(prev))


@pytest.mark.benchmark(group="preprocess-threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_preprocess_threads(benchmark, pairs, threads):
    frames, prev = pairs
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run(benchmark, dqnfast_pass, frames, prev, torch.empty((PAIRS, 84, 84), dtype=torch.uint8))
    finally:
        torch.set_num_threads(previous)
    benchmark.extra_info["threads"] = threads
