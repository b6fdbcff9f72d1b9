"""Atari through envpool: its C++ threads emulate, preprocess and stack; see
``atari`` for the options, the modes and how the two Atari backends compare."""
import numpy as np
import torch

from dqnfast.envs.atari import ATARI_RAW_SIZE, BackendAtari, FrameStacks, camel, env_threads


class EnvpoolAtari(BackendAtari):
    """Atari through envpool's gymnasium interface (next-step autoreset, its own
    no-op/fire reset, frame skip with max-pool, episodic life and time limit)."""

    def __init__(self, env_id: str, game: str, num_envs: int, seed: int, opts: dict):
        import envpool

        task_id = camel(game) + "-v5"  # envpool's own spelling of its ROM names
        native = opts["preprocess"] == "native"
        height, width = opts["img_size"] if native else ATARI_RAW_SIZE
        self._env = envpool.make_gymnasium(
            task_id, num_envs=num_envs, seed=seed,
            num_threads=env_threads(opts["num_threads"], num_envs),
            noop_max=max(opts["noop_max"], 1),  # envpool takes 1..noop_max no-ops
            frame_skip=opts["frame_skip"],
            use_fire_reset=opts["fire_reset"],
            episodic_life=opts["episodic_life"],
            reward_clip=False,  # clipped here, so that returns stay unclipped
            repeat_action_probability=float(opts["repeat_action_probability"]),
            max_episode_steps=max(opts["max_episode_frames"] // opts["frame_skip"], 1),
            full_action_space=opts["full_action_space"],
            img_height=height, img_width=width,
            gray_scale=native,
            stack_num=opts["frame_stack"] if native else 1,
            use_inter_area_resize=True,
        )
        self._env_ids = np.arange(num_envs, dtype=np.int32)
        self._stacks = None if native else FrameStacks(
            num_envs, opts["frame_stack"], opts["img_size"], rgb="channels_first")
        super().__init__(env_id, num_envs, (opts["frame_stack"], *opts["img_size"]),
                         torch.uint8, int(self._env.action_space.n), opts["frame_stack"],
                         reward_clip=opts["reward_clip"])

    def _reset(self) -> np.ndarray:
        obs, _ = self._env.reset()
        return obs if self._stacks is None else self._stacks.reset(obs)

    _sends_async = True

    def _step(self, actions, reset_step, new_game):
        self._send(actions)
        return self._recv(reset_step, new_game)

    def _send(self, actions):
        self._env.send(actions, self._env_ids)

    def _recv(self, reset_step, new_game):
        obs, reward, terminated, truncated, info = self._env.recv()
        order = np.argsort(info["env_id"])  # whichever env finished first comes first
        obs, reward, terminated, truncated = (x[order] for x in (obs, reward, terminated, truncated))
        if self._stacks is not None:
            # envpool refills its stack only when a game starts, not after a lost life.
            obs = self._stacks.push(obs, new_game)
        # info["reward"] is the unclipped reward too; info["terminated"] is game over.
        return obs, reward, terminated, truncated, info["terminated"][order].astype(bool)
