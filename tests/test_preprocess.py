"""preprocess_frames against OpenCV, push_frames against a numpy stack; their CUDA kernels
(marked ``cuda``) against the CPU ones, bit for bit."""
import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dqnfast
from atari_frames import GAMES, ale_frame_pairs


def opencv_reference(frames, prev=None, *, crop=None, resize=(84, 84), window=None):
    """max, cv2.cvtColor to uint8 gray, cv2.resize INTER_AREA, then the window."""
    pooled = frames if prev is None else np.maximum(frames, prev)
    out = []
    for frame in pooled:
        if crop is not None:
            top, left, height, width = crop
            frame = np.ascontiguousarray(frame[top:top + height, left:left + width])
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(gray, (resize[1], resize[0]), interpolation=cv2.INTER_AREA)
        if window is not None:
            top, left, height, width = window
            small = small[top:top + height, left:left + width]
        out.append(small)
    return np.stack(out)


def float_reference(frames, prev=None, *, resize=(84, 84)):
    """Grayscale with float weights, resized in float32, rounded once."""
    pooled = (frames if prev is None else np.maximum(frames, prev)).astype(np.float32)
    gray = pooled @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.stack([np.floor(cv2.resize(g, (resize[1], resize[0]), interpolation=cv2.INTER_AREA) + 0.5)
                     for g in gray]).clip(0, 255).astype(np.uint8)


def assert_close_to(ours, reference, exact_fraction):
    ours = ours.numpy() if isinstance(ours, torch.Tensor) else ours
    assert ours.shape == reference.shape
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    assert diff.max() <= 1, f"{(diff > 1).sum()} pixels differ by more than 1"
    if diff.size >= 1000:  # a fraction of a tiny output says little
        assert (diff == 0).mean() >= exact_fraction, (diff == 0).mean()


@pytest.mark.parametrize("game", GAMES)
def test_real_frames_match_opencv(game):
    frames, prev = ale_frame_pairs(game)
    assert_close_to(dqnfast.preprocess_frames(frames, prev), opencv_reference(frames, prev), 0.999)
    assert_close_to(dqnfast.preprocess_frames(frames), opencv_reference(frames), 0.999)
    assert_close_to(dqnfast.preprocess_frames(frames, prev), float_reference(frames, prev), 0.95)
    assert_close_to(dqnfast.preprocess_frames(frames, prev, mode="textbook"),
                    opencv_reference(frames, prev, resize=(110, 84), window=(18, 0, 84, 84)), 0.999)
    planar, planar_prev = (np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in (frames, prev))
    assert torch.equal(dqnfast.preprocess_frames(planar, planar_prev, channels_first=True),
                       dqnfast.preprocess_frames(frames, prev))
    crop = (34, 0, 160, 160)  # the playing field of many games
    assert_close_to(dqnfast.preprocess_frames(frames, prev, crop=crop),
                    opencv_reference(frames, prev, crop=crop), 0.999)


def test_max_pool_takes_the_brighter_frame():
    frames = np.zeros((1, 4, 4, 3), np.uint8)
    prev = np.full((1, 4, 4, 3), 200, np.uint8)
    out = dqnfast.preprocess_frames(frames, prev, out_size=(2, 2))
    assert out.tolist() == [[[200, 200], [200, 200]]]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_sizes_match_opencv(data):
    n = data.draw(st.integers(1, 3))
    height, width = data.draw(st.integers(1, 120)), data.draw(st.integers(1, 120))
    top, left = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
    crop = (top, left, data.draw(st.integers(1, height - top)), data.draw(st.integers(1, width - left)))
    out_size = (data.draw(st.integers(1, crop[2])), data.draw(st.integers(1, crop[3])))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # Smooth-ish images, like game screens, and pure noise.
    levels = data.draw(st.sampled_from([4, 256]))
    frames = (rng.integers(0, levels, (n, height, width, 3)) * (255 // (levels - 1))).astype(np.uint8)
    prev = (rng.integers(0, levels, (n, height, width, 3)) * (255 // (levels - 1))).astype(np.uint8)
    ours = dqnfast.preprocess_frames(frames, prev, out_size=out_size, crop=crop)
    assert_close_to(ours, opencv_reference(frames, prev, crop=crop, resize=out_size), 0.99)


def test_out_is_written_in_place_and_threads_agree():
    frames, prev = ale_frame_pairs("breakout", count=16)
    stacks = torch.zeros((16, 4, 84, 84), dtype=torch.uint8)
    # A slot of a stack is a strided view, so write into a contiguous buffer instead.
    out = torch.empty((16, 84, 84), dtype=torch.uint8)
    assert dqnfast.preprocess_frames(frames, prev, out=out) is out
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = dqnfast.preprocess_frames(frames, prev)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out, single)
    stacks = dqnfast.push_frames(stacks, out)
    assert torch.equal(stacks[:, -1], out)


@pytest.mark.parametrize("call,error,message", [
    (lambda f: dqnfast.preprocess_frames(f.astype(np.float32)), TypeError, "expected torch.uint8 frames, got torch.float32"),
    (lambda f: dqnfast.preprocess_frames(f[..., :2]), ValueError, r"expected frames of shape \(N, H, W, 3\)"),
    (lambda f: dqnfast.preprocess_frames(f, channels_first=True), ValueError, r"expected frames of shape \(N, 3, H, W\)"),
    (lambda f: dqnfast.preprocess_frames(f[0]), ValueError, r"expected frames of shape \(N, H, W, 3\)"),
    (lambda f: dqnfast.preprocess_frames(f[:0]), ValueError, "expected a non-empty batch"),
    (lambda f: dqnfast.preprocess_frames(f, f[:1]), ValueError, "expected prev_frames of shape"),
    (lambda f: dqnfast.preprocess_frames(f, f.astype(np.int16)), TypeError, "expected torch.uint8 prev_frames"),
    (lambda f: dqnfast.preprocess_frames(f, out_size=(300, 84)), ValueError, "area resize only shrinks"),
    (lambda f: dqnfast.preprocess_frames(f, crop=(200, 0, 20, 160)), ValueError, "must lie inside the 210x160 frames"),
    (lambda f: dqnfast.preprocess_frames(f, mode="fast"), ValueError, "mode must be 'deepmind' or 'textbook'"),
    (lambda f: dqnfast.preprocess_frames(f, mode="textbook", out_size=(64, 64)), ValueError, "gives 84x84 frames"),
    (lambda f: dqnfast.preprocess_frames(f, out=torch.empty(2, 84, 83, dtype=torch.uint8)), ValueError, "expected a contiguous torch.uint8 out"),
    (lambda f: dqnfast.preprocess_frames(list(f)), TypeError, "expected frames as a numpy array or torch tensor"),
])
def test_bad_preprocess_input(call, error, message):
    frames = np.zeros((2, 210, 160, 3), np.uint8)
    with pytest.raises(error, match=message):
        call(frames)


def naive_push(stacks, frames, reset):
    stacks = stacks.copy()
    for n in range(len(stacks)):
        if reset is not None and reset[n]:
            stacks[n] = frames[n]
        else:
            stacks[n] = np.concatenate([stacks[n, 1:], frames[n][None]])
    return stacks


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_push_frames_matches_numpy_stack_across_resets(dtype):
    rng = np.random.default_rng(0)
    stacks = torch.zeros((5, 4, 6, 7), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
    expected = stacks.numpy().copy()
    for step in range(30):
        frames = rng.integers(0, 255, (5, 6, 7)).astype(dtype)
        reset = rng.random(5) < 0.2 if step % 3 else None
        before = stacks.clone()
        pushed = dqnfast.push_frames(stacks, frames, reset)
        expected = naive_push(expected, frames, reset)
        np.testing.assert_array_equal(pushed.numpy(), expected)
        assert torch.equal(stacks, before)  # the old stacks are left as they were
        stacks = pushed


@pytest.mark.parametrize("call,error,message", [
    (lambda s: dqnfast.push_frames(s, np.zeros((3, 6, 6), np.uint8)), ValueError, r"expected frames of shape \[3, 6, 7\]"),
    (lambda s: dqnfast.push_frames(s, np.zeros((3, 6, 7), np.float32)), TypeError, "expected frames of torch.uint8"),
    (lambda s: dqnfast.push_frames(s, np.zeros((3, 6, 7), np.uint8), np.array([1, 0, 0])), TypeError, "expected torch.bool reset"),
    (lambda s: dqnfast.push_frames(s, np.zeros((3, 6, 7), np.uint8), np.array([True])), ValueError, r"expected reset of shape \[3\]"),
    (lambda s: dqnfast.push_frames(s, np.zeros((3, 6, 7), np.uint8), out=s), ValueError, "expected out to share no memory with stacks"),
    (lambda s: dqnfast.push_frames(s, np.zeros((3, 6, 7), np.uint8), out=s[:, :, :, :3].contiguous()), ValueError, r"expected a contiguous out of torch.uint8 \[3, 4, 6, 7\]"),
])
def test_bad_push_frames_input_changes_nothing(call, error, message):
    stacks = torch.arange(3 * 4 * 6 * 7, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, 4, 6, 7)
    before = stacks.clone()
    with pytest.raises(error, match=message):
        call(stacks)
    assert torch.equal(stacks, before)


# -- on a GPU: the CUDA kernels against their CPU twins, bit for bit ----------

@pytest.mark.cuda
@pytest.mark.parametrize("game", GAMES)
def test_preprocess_matches_cpu_on_real_frames(game):
    frames, prev = (torch.from_numpy(x) for x in ale_frame_pairs(game, count=16))
    planar, planar_prev = (x.permute(0, 3, 1, 2).contiguous() for x in (frames, prev))
    for kwargs in (dict(), dict(mode="textbook"), dict(crop=(34, 0, 160, 160), out_size=(80, 80)),
                   dict(out_size=(105, 80))):
        cpu = dqnfast.preprocess_frames(frames, prev, **kwargs)
        assert torch.equal(dqnfast.preprocess_frames(frames.cuda(), prev.cuda(), **kwargs).cpu(), cpu)
        assert torch.equal(dqnfast.preprocess_frames(frames.cuda(), **kwargs).cpu(),
                           dqnfast.preprocess_frames(frames, **kwargs))
        assert torch.equal(dqnfast.preprocess_frames(planar.cuda(), planar_prev.cuda(),
                                                     channels_first=True, **kwargs).cpu(), cpu)


@pytest.mark.cuda
def test_preprocess_matches_cpu_on_random_sizes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 200, 2)
        out_size = (int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1)))
        frames = torch.from_numpy(rng.integers(0, 256, (3, height, width, 3), dtype=np.uint8))
        assert torch.equal(dqnfast.preprocess_frames(frames.cuda(), out_size=out_size).cpu(),
                           dqnfast.preprocess_frames(frames, out_size=out_size))


@pytest.mark.cuda
def test_push_frames_matches_cpu():
    rng = np.random.default_rng(0)
    cpu = torch.from_numpy(rng.integers(0, 256, (6, 4, 84, 84), dtype=np.uint8))
    gpu = cpu.cuda()
    for step in range(20):
        frames = torch.from_numpy(rng.integers(0, 256, (6, 84, 84), dtype=np.uint8))
        reset = torch.from_numpy(rng.random(6) < 0.3) if step % 2 else None
        cpu = dqnfast.push_frames(cpu, frames, reset)
        gpu = dqnfast.push_frames(gpu, frames.cuda(), None if reset is None else reset.cuda())
        assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.cuda
def test_preprocess_uploads_its_tables_once_and_can_be_captured():
    frames, prev = (torch.from_numpy(x).cuda() for x in ale_frame_pairs("pong", count=4))
    eager = dqnfast.preprocess_frames(frames, prev)  # uploads this geometry's tables
    out = torch.empty_like(eager)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        dqnfast.preprocess_frames(frames, prev, out=out)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(out, eager)
    graph = torch.cuda.CUDAGraph()
    out.zero_()
    with torch.cuda.graph(graph):
        dqnfast.preprocess_frames(frames, prev, out=out)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)
