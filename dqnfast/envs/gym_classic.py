"""The classic gymnasium environments named here, each with a preset in ``dqnfast.presets``:

========================  ================================================================
``"CartPole-v1"``         float32 (4,) state (the setup of ``gym_generic``).
``"FrozenLake-v1"``       one-hot float32 (16,) state (64 with ``map_name="8x8"``),
                          slippery by default.
``"CartPole-pixels"``     CartPole as the pixel tutorials see it: the rendered 600x400
                          screen, rows 40%..80% (the cart and pole band) and a window 30%
                          of the width centred on the cart, gray, area-resized to
                          ``img_size`` and stacked: uint8 (4, 84, 84). Needs pygame.
========================  ================================================================

Env steps per second, 8 envs, random actions, measured as the Atari modes are (see
``atari``): CartPole-v1 ~145,000; FrozenLake-v1 ~135,000; CartPole-pixels ~1,000-1,100.
"""
import os
from typing import Tuple

import numpy as np
import torch

from dqnfast.envs.gym_generic import GymVectorState
from dqnfast.envs.gym_vector import GymVectorEnv, render_kwargs, time_limit_kwargs
from dqnfast.envs.options import check_bool, check_int, check_size, with_defaults
from dqnfast.extras import importable
from dqnfast.preprocess import preprocess_frames, push_frames

CLASSIC_ENV_IDS = ("CartPole-v1", "FrozenLake-v1", "CartPole-pixels")


class _FrozenLake(GymVectorEnv):
    def __init__(self, env_id, num_envs, seed, options):
        opts = with_defaults(env_id, options, {"is_slippery": True, "map_name": "4x4",
                                                "max_episode_steps": None, "render": False})
        check_bool("is_slippery", opts["is_slippery"])
        if opts["map_name"] not in ("4x4", "8x8"):
            raise ValueError(f"map_name must be '4x4' or '8x8', got {opts['map_name']!r}")
        num_states = 16 if opts["map_name"] == "4x4" else 64
        self._one_hot = np.eye(num_states, dtype=np.float32)
        super().__init__(env_id, "FrozenLake-v1", num_envs, seed, (num_states,),
                         torch.float32, is_slippery=opts["is_slippery"],
                         map_name=opts["map_name"], **render_kwargs(opts),
                         **time_limit_kwargs(opts))

    def _observe(self, obs, new_episode):
        return self._one_hot[obs]


class _CartPolePixels(GymVectorEnv):
    """CartPole seen through its rendered screen, as in the pixel DQN tutorials: the
    band of rows where the cart and pole are (40% to 80% of the height) and a window
    30% of the screen wide, centred on the cart (clamped at the edges); gray,
    area-resized to ``img_size`` and stacked ``frame_stack`` deep. The window is
    nearly square (180x160 of 600x400), so a square ``img_size`` keeps the pole's
    angle, as the tutorials' resize does: a window 60% wide, squeezed 4.3x sideways
    into 84 columns, moves the pole's tip by under a pixel for tilts below 0.1 rad."""

    _ROWS = (0.4, 0.8)
    _VIEW_WIDTH = 0.3

    def __init__(self, env_id, num_envs, seed, options):
        opts = with_defaults(env_id, options, {"frame_stack": 4, "img_size": (84, 84),
                                                "max_episode_steps": None})
        check_int("frame_stack", opts["frame_stack"], minimum=1)
        img_size = check_size("img_size", opts["img_size"], (160, 360))
        if not importable("pygame"):
            raise ImportError("CartPole-pixels renders CartPole with pygame: "
                              "pip install 'gymnasium[classic-control]'")
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Headless: rgb_array rendering needs no display; this keeps SDL quiet.
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        super().__init__(env_id, "CartPole-v1", num_envs, seed,
                         (opts["frame_stack"], *img_size), torch.uint8,
                         frame_stack=opts["frame_stack"], render_mode="rgb_array",
                         **time_limit_kwargs(opts))
        self._img_size = img_size
        self._x_threshold = float(self._env.envs[0].unwrapped.x_threshold)
        self._gray = torch.empty((num_envs, *img_size), dtype=torch.uint8)
        self._stacks = torch.zeros((num_envs, *self.obs_shape), dtype=torch.uint8)

    def _observe(self, obs, new_episode):
        # The returned state is the rendered one (also on reset and final steps), so
        # the cart's position x = state[0] places the window.
        frames = self._env.render()
        for i, (frame, x) in enumerate(zip(frames, obs[:, 0])):
            crop = self.cart_window(frame.shape[0], frame.shape[1], float(x))
            preprocess_frames(frame[None], crop=crop, out_size=self._img_size,
                              out=self._gray[i:i + 1])
        self._stacks = push_frames(self._stacks, self._gray,
                                   torch.from_numpy(np.asarray(new_episode, bool)))
        return self._stacks.numpy()

    def cart_window(self, height: int, width: int, x: float) -> Tuple[int, int, int, int]:
        """The crop (top, left, height, width) around a cart at position ``x``."""
        top, bottom = int(height * self._ROWS[0]), int(height * self._ROWS[1])
        view = int(width * self._VIEW_WIDTH)
        cart = int(x * width / (2 * self._x_threshold) + width / 2)
        left = min(max(cart - view // 2, 0), width - view)
        return top, left, bottom - top, view


CLASSIC_MAKERS = {
    "CartPole-v1": GymVectorState,  # a plain vector state: the generic setup serves it
    "FrozenLake-v1": _FrozenLake,
    "CartPole-pixels": _CartPolePixels,
}

