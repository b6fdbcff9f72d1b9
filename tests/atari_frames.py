"""Real Atari screens for the preprocessing tests and benchmarks (from ale-py and its
ROMs; tests that use them skip without). Only numpy and pytest besides: the GPU tests
import it on machines that lack the CPU tests' other dependencies (hypothesis, cv2)."""
import numpy as np
import pytest

GAMES = ["pong", "breakout", "space_invaders", "ms_pacman", "seaquest"]


def ale_frame_pairs(game, count=8, seed=0):
    """(frames, prev_frames): consecutive screens of `game` under random play."""
    ale_py = pytest.importorskip("ale_py")
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(game))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    frames, prev = [], []
    for _ in range(count):
        for _ in range(int(rng.integers(5, 40))):
            ale.act(actions[rng.integers(len(actions))])
            if ale.game_over():
                ale.reset_game()
        prev.append(ale.getScreenRGB())
        ale.act(actions[rng.integers(len(actions))])
        frames.append(ale.getScreenRGB())
    return np.stack(frames), np.stack(prev)
