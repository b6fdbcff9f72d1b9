"""Atari through ale-py's ``AtariVectorEnv``; see ``atari`` for the options, the
modes and how the two Atari backends compare."""
import numpy as np
import torch

from dqnfast.envs.atari import ATARI_RAW_SIZE, BackendAtari, FrameStacks, env_threads


class AleAtari(BackendAtari):
    """Atari through ale-py's ``AtariVectorEnv`` (C++ threads, next-step autoreset).

    It emits one frame per step here, (N, 1, H, W) gray or (N, 1, 210, 160, 3) RGB
    (``grayscale=False``), which ``FrameStacks`` stacks: ALE would start a game's
    stack with black frames, envpool (and this interface) with copies of the first.
    ALE's ``episodic_life`` restarts the whole game on a life loss, so it runs with
    ``life_loss_info`` instead (terminated on a life loss, the game goes on), and this
    class spends the next step of that env on FIRE (or NOOP): the same reset step that
    envpool takes there. ``step_async`` uses ALE's own send/recv: its threads step
    while the caller goes on.
    """

    def __init__(self, env_id: str, game: str, num_envs: int, seed: int, opts: dict):
        from ale_py import Action
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        native = opts["preprocess"] == "native"
        height, width = opts["img_size"] if native else ATARI_RAW_SIZE
        self._env = AtariVectorEnv(
            game, num_envs,
            num_threads=env_threads(opts["num_threads"], num_envs),
            max_num_frames_per_episode=opts["max_episode_frames"],
            repeat_action_probability=float(opts["repeat_action_probability"]),
            full_action_space=opts["full_action_space"],
            autoreset_mode=AutoresetMode.NEXT_STEP,
            img_height=height, img_width=width,
            grayscale=native,
            stack_num=1,
            frameskip=opts["frame_skip"],
            maxpool=True,
            noop_max=max(opts["noop_max"], 1),  # ALE takes 1..noop_max no-ops
            episodic_life=False,
            life_loss_info=opts["episodic_life"],
            reward_clipping=False,
            use_fire_reset=opts["fire_reset"],
        )
        action_set = list(self._env.ale.get_action_set())
        fire = opts["fire_reset"] and Action.FIRE in action_set
        self._life_reset_action = action_set.index(Action.FIRE) if fire else 0
        self._episodic_life = opts["episodic_life"]
        self._seed = seed
        self._lives = np.zeros(num_envs, np.int64)
        self._life_lost = np.zeros(num_envs, bool)
        self._stacks = FrameStacks(num_envs, opts["frame_stack"], opts["img_size"],
                                    rgb=None if native else "channels_last")
        super().__init__(env_id, num_envs, (opts["frame_stack"], *opts["img_size"]),
                         torch.uint8, int(self._env.single_action_space.n),
                         opts["frame_stack"], reward_clip=opts["reward_clip"])

    def _reset(self) -> np.ndarray:
        seeds = None
        if self._seed is not None:  # seed once; later resets go on from there
            # ALE leaves an env seeded with 0 unseeded, so the seeds start at 1.
            seeds = np.arange(self.num_envs, dtype=np.int64) + self._seed + 1
            self._seed = None
        obs, info = self._env.reset(seed=seeds)
        self._lives = info["lives"].astype(np.int64)
        self._life_lost[:] = False
        return self._stacks.reset(obs[:, 0])

    _sends_async = True

    def _step(self, actions, reset_step, new_game):
        self._send(actions)
        return self._recv(reset_step, new_game)

    def _send(self, actions):
        # Envs that lost a life (and only that) reset here by pressing FIRE (or NOOP);
        # ALE itself ignores the action of an env that ended its game.
        life_reset = self._resetting & self._life_lost
        if life_reset.any():
            actions = np.where(life_reset, self._life_reset_action, actions)
        self._env.send(actions)

    def _recv(self, reset_step, new_game):
        obs, reward, terminated, truncated, info = self._env.recv()
        order = info["env_id"]
        if np.any(order[1:] < order[:-1]):  # in env order, as the books keep them
            order = np.argsort(order)
            obs, reward, terminated, truncated = (x[order] for x in (obs, reward, terminated, truncated))
            info = {"lives": info["lives"][order]}
        lives = info["lives"].astype(np.int64)
        if self._episodic_life:
            # A termination with lives lost but some left is a lost life, the rule
            # ALE's and envpool's episodic_life use; any other one is the game's end.
            self._life_lost = terminated & (lives < self._lives) & (lives > 0)
        self._lives = lives
        obs = self._stacks.push(obs[:, 0], new_game)
        return obs, reward, terminated, truncated, ~self._life_lost
