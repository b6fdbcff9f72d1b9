"""Play a trained agent: ``python -m dqnfast.evaluate CHECKPOINT [--episodes N] [--gif FILE]``

CHECKPOINT is a run folder, its ``best_model.pt`` or a full checkpoint. The agent acts
greedily except for a small epsilon (0.05 by default, as in the Nature paper's
evaluation); returns are whole-game and unclipped.
"""
import argparse
from typing import List, NamedTuple, Optional

import numpy as np
import torch

from dqnfast import envs
from dqnfast.acting import select_actions
from dqnfast.checkpoint import load_model
from dqnfast.cli import add_debug_flag, entry_point
from dqnfast.extras import require_extra
from dqnfast.learner import torch_device


class Evaluation(NamedTuple):
    returns: List[float]
    mean: float
    std: float


def evaluate(checkpoint, *, episodes: int = 10, epsilon: float = 0.05, seed: int = 12345,
             num_envs: int = 1, gif: Optional[str] = None, device="cpu") -> Evaluation:
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    if gif is not None:
        require_extra("--gif", "train", "PIL")
    device = torch.device(device)
    q_network, config = load_model(checkpoint, device)
    options = dict(config.env_options)
    if gif is not None:  # a screen to record
        options.update(envs.render_options(config.env))
    env = envs.make(config.env, num_envs=num_envs, seed=seed, **options)
    rng = np.random.default_rng(seed)
    # Each env plays a fixed share of the episodes: keeping whichever episodes end first
    # would favour short ones.
    quota = np.full(env.num_envs, episodes // env.num_envs)
    quota[:episodes % env.num_envs] += 1
    frames, recording = [], gif is not None
    returns = []
    obs = env.reset()
    while len(returns) < episodes:
        if recording:
            frames.append(env.render())
        actions = select_actions(q_network, obs, epsilon, env.num_actions, device, rng)
        obs, _, _, _, info = env.step(actions)
        for i in np.flatnonzero(info["episode_done"]):
            if quota[i] > 0:
                quota[i] -= 1
                returns.append(float(info["episode_return"][i]))
            recording = recording and i != 0  # one whole episode of env 0
    env.close()
    if gif is not None:
        write_gif(gif, frames)
    return Evaluation(returns, float(np.mean(returns)), float(np.std(returns)))


def write_gif(path, frames, fps: int = 30) -> None:
    from PIL import Image
    images = [Image.fromarray(np.asarray(frame)) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


@entry_point
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dqnfast.evaluate", description=__doc__.split("\n")[0])
    add_debug_flag(parser)
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--gif", help="write one episode as an animated GIF")
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args(argv)
    result = evaluate(args.checkpoint, episodes=args.episodes, epsilon=args.epsilon, seed=args.seed,
                      num_envs=args.num_envs, gif=args.gif, device=torch_device(args.cuda))
    print(f"{len(result.returns)} episodes: mean return {result.mean:.2f} +- {result.std:.2f}")
    if args.gif:
        print(f"wrote {args.gif}")


if __name__ == "__main__":
    main()
