"""Train a DQN agent: ``python -m dqnfast.train [--cuda] [--env ENV] [--preset NAME] ...``

The loop, top to bottom: act epsilon-greedily in all environments at once, store
the transitions in the compiled replay buffer, update the Q-network on sampled
batches, sync the target network, log, checkpoint. Settings: ``dqnfast.config``.
"""
import copy
import importlib.util
import math
import random
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch

from dqnfast import envs
from dqnfast.checkpoint import (BEST_MODEL, load_checkpoint, model_info, save_checkpoint,
                                save_model)
from dqnfast.config import Config, parse_args, write_config
from dqnfast.models import make_q_network
from dqnfast.replay_buffer import ReplayBuffer
from dqnfast.run_log import RunLog, truncate_to_step
from dqnfast.update import GraphedUpdate, Update

# What the loop imports beyond dqnfast's own dependencies: the `train` extra installs them.
TRAIN_EXTRA_MODULES = ("gymnasium", "tqdm")
LOG_INTERVAL_UPDATES = 100  # reading the loss back syncs the GPU: not every update
RETURN_WINDOW = 100  # episodes in the mean that decides "solved" and the best model


class TrainResult(NamedTuple):
    run_dir: Path
    steps: int
    episodes: int
    mean_return: float  # over the last RETURN_WINDOW episodes (nan if none)
    solved: bool


def epsilon_at(cfg: Config, step: int) -> float:
    if cfg.epsilon_schedule == "linear":
        fraction = min(step / max(cfg.epsilon_decay_steps, 1), 1.0)
        return cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start)
    if cfg.epsilon_schedule == "exponential":  # the CartPole tutorial's decay
        return cfg.epsilon_end + (cfg.epsilon_start - cfg.epsilon_end) * math.exp(
            -step / max(cfg.epsilon_decay_steps, 1))
    raise ValueError(f"epsilon_schedule must be 'linear' or 'exponential', got {cfg.epsilon_schedule!r}")


def beta_at(cfg: Config, step: int) -> float:
    """Prioritized replay's importance-weight exponent, linear from beta_start to beta_end."""
    fraction = min(step / max(cfg.total_steps, 1), 1.0)
    return cfg.beta_start + fraction * (cfg.beta_end - cfg.beta_start)


def uses_cuda_graphs(cfg: Config) -> bool:
    return cfg.cuda and cfg.cuda_graph


def make_optimizer(cfg: Config, parameters):
    # The fused implementations step all parameters in one kernel: measured ~10% off a
    # Nature-CNN update and more off small MLP updates on CPU. Capturable: the step
    # counts live on the GPU, so a CUDA graph can replay the step.
    capturable = uses_cuda_graphs(cfg)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True,
                                capturable=capturable)
    if cfg.optimizer == "adamw":  # amsgrad as in the CartPole tutorial
        return torch.optim.AdamW(parameters, lr=cfg.learning_rate, eps=cfg.adam_eps, amsgrad=True,
                                 fused=True, capturable=capturable)
    if cfg.optimizer == "rmsprop":  # the Nature paper's centered RMSProp
        return torch.optim.RMSprop(parameters, lr=cfg.learning_rate, alpha=0.95, eps=cfg.adam_eps,
                                   centered=True, capturable=capturable)
    raise ValueError(f"optimizer must be adam, adamw or rmsprop, got {cfg.optimizer!r}")


def make_update(cfg: Config, q_network, target_network, optimizer, replay) -> Update:
    kind = GraphedUpdate if uses_cuda_graphs(cfg) else Update
    return kind(q_network, target_network, optimizer, replay, batch_size=cfg.batch_size,
                loss=cfg.loss, double_dqn=cfg.double_dqn, max_grad_norm=cfg.max_grad_norm,
                tau=cfg.tau)


def select_actions(q_network, obs: np.ndarray, epsilon: float, num_actions: int,
                   device: torch.device, rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy for all environments with one batched forward (none if all explore)."""
    explore = rng.random(len(obs)) < epsilon
    actions = rng.integers(0, num_actions, len(obs))
    if not explore.all():
        with torch.no_grad():
            greedy = q_network(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()
        actions = np.where(explore, actions, greedy)
    return actions


def train(cfg: Config, resume_dir: Optional[str] = None) -> TrainResult:
    # -- set-up ------------------------------------------------------------------------
    deadline = math.inf if cfg.max_minutes is None else time.time() + 60.0 * cfg.max_minutes
    if cfg.cuda and not torch.cuda.is_available():
        raise RuntimeError("--cuda was given, but torch sees no CUDA GPU "
                           f"(torch {torch.__version__}, CUDA {torch.version.cuda})")
    device = torch.device("cuda" if cfg.cuda else "cpu")
    # First the env: one that DQN cannot run (continuous actions, say) stops here,
    # before a run folder is made.
    env = envs.make(cfg.env, num_envs=cfg.num_envs, seed=cfg.seed, **cfg.env_options)
    run_dir = Path(resume_dir or cfg.run_dir or Path("runs") / (
        f"{cfg.env}__{cfg.preset}__{cfg.seed}__{datetime.now():%Y%m%d-%H%M%S}"))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, cfg)  # a resumed run records what it may have extended
    if cfg.torch_threads is not None:
        # Small networks run faster on one thread, and never stall on a busy machine.
        torch.set_num_threads(cfg.torch_threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    q_network = make_q_network(env.obs_shape, env.obs_dtype, env.num_actions,
                               dueling=cfg.dueling, hidden=cfg.hidden).to(device)
    target_network = copy.deepcopy(q_network).requires_grad_(False)
    optimizer = make_optimizer(cfg, q_network.parameters())
    replay = ReplayBuffer(cfg.buffer_size, env.obs_shape, num_envs=env.num_envs,
                          frame_stack=env.frame_stack, obs_dtype=env.obs_dtype, device=device,
                          storage_device=device if cfg.replay_on_gpu else "cpu", seed=cfg.seed,
                          n_step=cfg.n_step, gamma=cfg.gamma, prioritized=cfg.prioritized,
                          alpha=cfg.alpha, beta=cfg.beta_start, priority_eps=cfg.priority_eps)
    step, updates, episodes, best_mean, wall_time = 0, 0, 0, -math.inf, 0.0
    recent_returns = deque(maxlen=RETURN_WINDOW)
    if resume_dir is not None:
        saved = load_checkpoint(run_dir, replay, map_location=device)
        q_network.load_state_dict(saved["q_network"])
        target_network.load_state_dict(saved["target_network"])
        optimizer.load_state_dict(saved["optimizer"])
        step, updates, episodes = saved["step"], saved["updates"], saved["episodes"]
        best_mean, wall_time = saved["best_mean"], saved["wall_time"]
        recent_returns.extend(saved["recent_returns"])
        rng.bit_generator.state = saved["action_rng"]
        truncate_to_step(run_dir, step)
    update = make_update(cfg, q_network, target_network, optimizer, replay)
    log = RunLog(run_dir, wall_time_offset=wall_time)
    progress = _progress_bar(cfg, step)

    # -- the loop ------------------------------------------------------------------------
    obs = env.reset()
    iteration, solved, learning, out_of_time = 0, False, False, False
    mean_return = float(np.mean(recent_returns)) if recent_returns else math.nan
    last_log_time, last_log_step = time.time(), step
    while step < cfg.total_steps and not solved and not out_of_time:
        epsilon = epsilon_at(cfg, step)
        actions = select_actions(q_network, obs, epsilon, env.num_actions, device, rng)
        if cfg.async_envs:
            env.step_async(actions)  # the envs step while the network updates
        else:
            stepped = env.step(actions)
        # The update samples what was stored up to the previous step.
        if learning and iteration % cfg.train_frequency == 0:
            if cfg.prioritized:
                replay.beta = beta_at(cfg, step)
            for _ in range(cfg.gradient_steps):
                stats = update()
                updates += 1
                if updates % LOG_INTERVAL_UPDATES == 0:  # one device-to-host read for both
                    td_loss, q_value = torch.stack([stats.loss, stats.q_taken.mean()]).tolist()
                    log.scalar("losses/td_loss", td_loss, step)
                    log.scalar("losses/q_values", q_value, step)
        next_obs, reward, terminated, truncated, info = env.step_wait() if cfg.async_envs else stepped
        # A step that only reset an environment (next-step autoreset) is no transition.
        live = np.flatnonzero(~info["reset_step"])
        replay.add(obs[live], actions[live], reward[live], next_obs[live], terminated[live],
                   truncated[live], env_ids=live)
        obs = next_obs
        previous_step, step, iteration = step, step + env.num_envs, iteration + 1

        finished = np.flatnonzero(info["episode_done"])
        for i in finished:
            episodes += 1
            recent_returns.append(float(info["episode_return"][i]))
            log.episode(float(info["episode_return"][i]), int(info["episode_length"][i]), step)

        # Reset steps store nothing: also wait for a whole batch to be stored.
        learning = learning or (step >= cfg.learning_starts and len(replay) >= cfg.batch_size)
        if cfg.tau >= 1.0 and step // cfg.target_update_interval > previous_step // cfg.target_update_interval:
            update.sync_target()

        if len(finished):
            mean_return = float(np.mean(recent_returns))
            if len(recent_returns) >= min(RETURN_WINDOW, 10) and mean_return > best_mean:
                best_mean = mean_return
                save_model(run_dir / BEST_MODEL, q_network, model_info(cfg, env), step=step,
                           mean_return=mean_return)
            solved = (cfg.reward_bound is not None and len(recent_returns) >= RETURN_WINDOW
                      and mean_return >= cfg.reward_bound)

        now = time.time()
        out_of_time = now >= deadline
        if now - last_log_time >= 1.0 or solved or step >= cfg.total_steps or out_of_time:
            sps = (step - last_log_step) / (now - last_log_time)
            log.scalar("charts/SPS", sps, step)
            log.scalar("charts/epsilon", epsilon, step)
            log.flush()
            if progress is not None:
                progress.update(step - progress.n)
                progress.set_postfix(sps=f"{sps:.0f}", episodes=episodes,
                                     mean_return=f"{mean_return:.2f}", epsilon=f"{epsilon:.3f}")
            last_log_time, last_log_step = now, step
        # Out of time: a last checkpoint, so that the run can be resumed from here.
        if step // cfg.checkpoint_interval > previous_step // cfg.checkpoint_interval or out_of_time:
            save_checkpoint(run_dir, {
                **model_info(cfg, env),
                "q_network": q_network.state_dict(), "target_network": target_network.state_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "updates": updates,
                "episodes": episodes, "best_mean": best_mean, "wall_time": log.wall_time,
                "recent_returns": list(recent_returns), "action_rng": rng.bit_generator.state,
            }, replay, step)

    # -- wrap-up -------------------------------------------------------------------------
    if progress is not None:
        progress.close()
    log.close()
    env.close()
    stopped = (f"Solved in {step} steps" if solved else f"Stopped after {step} steps" + (
        f" (time limit of {cfg.max_minutes:g} minutes)" if out_of_time else ""))
    message = stopped + (
        f" ({episodes} episodes, {log.wall_time:.0f} s): mean return of the last "
        f"{len(recent_returns)} episodes {mean_return:.2f}; run folder {run_dir}")
    print(message, flush=True)
    return TrainResult(run_dir, step, episodes, mean_return, solved)


def _progress_bar(cfg: Config, step: int):
    if not cfg.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.total_steps, initial=step, unit="step", dynamic_ncols=True,
                file=sys.stderr)


def require_train_extra() -> None:
    missing = [m for m in TRAIN_EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"python -m dqnfast.train needs the 'train' extra (missing: "
                         f"{', '.join(missing)}): pip install --no-build-isolation -e '.[train]' "
                         "in the dqnfast source tree (or: make setup)")


def main(argv=None) -> None:
    require_train_extra()
    cfg, resume_dir = parse_args(argv)
    train(cfg, resume_dir)


if __name__ == "__main__":
    main()
