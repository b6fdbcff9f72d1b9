"""The learner's side of a training run, shared by the single-process loop
(``dqnfast.train``) and the distributed one (``dqnfast.distributed``): networks,
optimizer, replay buffer and update; the step and episode counters; logs, the best
model and checkpoints, and resuming all of them from a run folder.

Whoever produces the experience (an env loop in this process, or actors elsewhere)
adds it to ``learner.replay`` and tells the learner what happened: ``advance`` for
env steps taken, ``episode`` for each finished game, ``learn`` for each update, and
``end_of_step`` once per round, which syncs the target network, logs, checkpoints
and checks the stopping rules.
"""
import copy
import math
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch

from dqnfast.acting import ActingNetwork
from dqnfast.checkpoint import BEST_MODEL, load_checkpoint, model_info, save_checkpoint, save_model
from dqnfast.config import Config, write_config
from dqnfast.models import make_q_network
from dqnfast.precision import warn_if_slow_precision
from dqnfast.replay_buffer import ReplayBuffer
from dqnfast.run_log import RETURN_WINDOW, RunLog, start_run_dir, truncate_to_step
from dqnfast.time_shares import TimeShares
from dqnfast.update import GraphedUpdate, Update

LOG_INTERVAL_UPDATES = 100  # updates between logged losses


class EnvSpec(NamedTuple):
    """What the learner needs to know of the environments (``VectorEnv`` has all of it)."""
    obs_shape: tuple
    obs_dtype: torch.dtype
    num_actions: int
    frame_stack: int

    @classmethod
    def of(cls, env) -> "EnvSpec":
        return cls(tuple(env.obs_shape), env.obs_dtype, env.num_actions, env.frame_stack)


class TrainResult(NamedTuple):
    run_dir: Path
    steps: int
    episodes: int
    mean_return: float  # over the last RETURN_WINDOW episodes (nan if none)
    solved: bool


def uses_cuda_graphs(cfg: Config) -> bool:
    return cfg.cuda and cfg.cuda_graph


def beta_at(cfg: Config, step: int) -> float:
    """Prioritized replay's importance-weight exponent, linear from beta_start to beta_end."""
    fraction = min(step / max(cfg.total_steps, 1), 1.0)
    return cfg.beta_start + fraction * (cfg.beta_end - cfg.beta_start)


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
                tau=cfg.tau, precision=cfg.precision)


def torch_device(cuda: bool) -> torch.device:
    """The GPU where ``cuda`` asks for it (a ValueError where torch sees none), else the CPU."""
    if cuda and not torch.cuda.is_available():
        raise ValueError("--cuda was given, but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, CUDA {torch.version.cuda})")
    return torch.device("cuda" if cuda else "cpu")


class Learner:
    """One run's learning state in ``run_dir``; ``resume`` loads its last checkpoint
    (``resumed`` then holds the checkpoint's extra entries, see ``end_of_step``).
    The buffer has ``buffer_envs`` environment streams. ``acts_here``: this process
    acts with ``acting`` (the single-process loop); else actors elsewhere do. The
    100-episode mean that picks the best model and decides "solved" is over every
    episode, or with ``judged_actor`` over that actor's only (the others' are logged).
    The best model is the acting network when the mean peaks, or the weights that
    played the episode which made the peak, where ``episode`` is given them."""

    def __init__(self, cfg: Config, spec: EnvSpec, run_dir: Path, *, buffer_envs: int,
                 resume: bool = False, acts_here: bool = True,
                 judged_actor: Optional[int] = None):
        self.cfg, self.spec, self.run_dir = cfg, spec, Path(run_dir)
        self.judged_actor = judged_actor
        self.device = torch_device(cfg.cuda)
        warn_if_slow_precision(cfg.precision, self.device)
        if cfg.torch_threads is not None:
            # Small networks run faster on one thread, and never stall on a busy machine.
            torch.set_num_threads(cfg.torch_threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.deadline = math.inf if cfg.max_minutes is None else time.time() + 60.0 * cfg.max_minutes

        self.q_network = make_q_network(spec.obs_shape, spec.obs_dtype, spec.num_actions,
                                        dueling=cfg.dueling, hidden=cfg.hidden).to(self.device)
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.optimizer = make_optimizer(cfg, self.q_network.parameters())
        self.replay = ReplayBuffer(
            cfg.buffer_size, spec.obs_shape, num_envs=buffer_envs, frame_stack=spec.frame_stack,
            obs_dtype=spec.obs_dtype, device=self.device,
            storage_device=self.device if cfg.replay_on_gpu else "cpu", seed=cfg.seed,
            n_step=cfg.n_step, gamma=cfg.gamma, prioritized=cfg.prioritized, alpha=cfg.alpha,
            beta=cfg.beta_start, priority_eps=cfg.priority_eps, num_actions=spec.num_actions)
        self.step = self.updates = self.episodes = 0
        self.best_mean, wall_time = -math.inf, 0.0
        self.recent_returns = deque(maxlen=RETURN_WINDOW)
        self.resumed = {}
        if resume:
            saved = load_checkpoint(self.run_dir, self.replay, map_location=self.device)
            self.q_network.load_state_dict(saved.pop("q_network"))
            self.target_network.load_state_dict(saved.pop("target_network"))
            self.optimizer.load_state_dict(saved.pop("optimizer"))
            self.step, self.updates = saved.pop("step"), saved.pop("updates")
            self.episodes, self.best_mean = saved.pop("episodes"), saved.pop("best_mean")
            wall_time = saved.pop("wall_time")
            self.recent_returns.extend(saved.pop("recent_returns"))
            self.resumed = saved
            truncate_to_step(self.run_dir, self.step)
        else:  # a new run: its folder changes only now, with all of the above checked
            start_run_dir(self.run_dir, cfg.overwrite)
        write_config(self.run_dir, cfg)  # a resumed run records what it may have extended
        self.update_step = make_update(cfg, self.q_network, self.target_network, self.optimizer,
                                       self.replay)
        self.acting = ActingNetwork(self.q_network, cfg.acting_refresh_updates,
                                    own_copy=acts_here)
        self.time_shares = TimeShares(self.device)
        self.log = RunLog(self.run_dir, wall_time_offset=wall_time)
        self.progress = _progress_bar(cfg, self.step)
        self.mean_return = float(np.mean(self.recent_returns)) if self.recent_returns else math.nan
        self.solved = self.out_of_time = self.learning = False
        self._previous_step = self.step
        self._last_log_time, self._last_log_step = time.time(), self.step
        self._pending_losses = None  # on a GPU: (host copy, its event, step), logged once done
        # (step, mean, played_with) of a best model to save (on a GPU: at a log line)
        self._best_pending = None

    @property
    def done(self) -> bool:
        return self.step >= self.cfg.total_steps or self.solved or self.out_of_time

    def learn(self, updates: int = 1) -> None:
        """``updates`` updates (prioritized replay: with beta annealed to the current
        step); on a GPU they are queued, and nothing here waits for them."""
        if self.cfg.prioritized:
            self.replay.beta = beta_at(self.cfg, self.step)
        with self.time_shares.updating():
            for _ in range(updates):
                stats = self.update_step()
                self.updates += 1
                self.acting.after_update(self.updates)
                if self.updates % LOG_INTERVAL_UPDATES == 0:
                    self._queue_losses(stats)

    def _queue_losses(self, stats) -> None:
        """Logs the update's loss and mean Q-value: at once on the CPU; on a GPU from a
        copy read at a later log line, once the GPU has made it (one at a time)."""
        values = torch.stack([stats.loss.detach(), stats.q_taken.detach().mean()])
        if self.device.type == "cpu":
            self._log_losses(values.tolist(), self.step)
        elif self._pending_losses is None:
            host = torch.empty(2, pin_memory=True)
            host.copy_(values, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
            self._pending_losses = (host, copied, self.step)

    def _log_losses(self, values, step: int) -> None:
        td_loss, q_value = values
        self.log.scalar("losses/td_loss", td_loss, step)
        self.log.scalar("losses/q_values", q_value, step)

    def _log_pending_losses(self, wait: bool) -> None:
        if self._pending_losses is not None:
            host, copied, step = self._pending_losses
            if wait or copied.query():
                copied.synchronize()
                self._log_losses(host.tolist(), step)
                self._pending_losses = None

    def advance(self, env_steps: int) -> None:
        self.step += env_steps
        # Reset steps store nothing: also wait for a whole batch to be stored.
        self.learning = self.learning or (self.step >= self.cfg.learning_starts
                                          and len(self.replay) >= self.cfg.batch_size)

    def episode(self, episodic_return: float, length: int, actor: Optional[int] = None,
                played_with: Optional[Callable[[], dict]] = None) -> None:
        """An episode that ended at ``step``, played by ``actor`` (elsewhere) or here.
        ``played_with``: the state dict of the weights that played it (called only when
        the episode makes a new best mean); without it the acting network is saved."""
        self.episodes += 1
        self.log.episode(episodic_return, length, self.step, actor=actor)
        if self.judged_actor is not None and actor != self.judged_actor:
            return
        self.recent_returns.append(episodic_return)
        self.mean_return = float(np.mean(self.recent_returns))
        if len(self.recent_returns) >= min(RETURN_WINDOW, 10) and self.mean_return > self.best_mean:
            self.best_mean = self.mean_return
            self._best_pending = (self.step, self.mean_return, played_with)
            if not self.acting.on_gpu:  # on a GPU: at the next log line, off the step's path
                self._save_best_model()
        self.solved = (self.cfg.reward_bound is not None and len(self.recent_returns) >= RETURN_WINDOW
                       and self.mean_return >= self.cfg.reward_bound)

    def _save_best_model(self) -> None:
        """The weights that played, or the acting ones (the learner's own on the CPU),
        read on the acting stream."""
        if self._best_pending is not None:
            step, mean_return, played_with = self._best_pending
            with self.acting.context():
                weights = self.acting.network.state_dict() if played_with is None else played_with()
                save_model(self.run_dir / BEST_MODEL, weights, model_info(self.cfg, self.spec),
                           step=step, mean_return=mean_return)
            self._best_pending = None

    def end_of_step(self, epsilon: Optional[float], checkpoint_extra: dict) -> None:
        """After the steps ``advance`` counted: the target sync, logs and progress (once a
        second; ``epsilon`` where there is one), the checkpoint (with
        ``checkpoint_extra``, back in ``resumed`` on resume)."""
        cfg, previous, step = self.cfg, self._previous_step, self.step
        self._previous_step = step
        if cfg.tau >= 1.0 and step // cfg.target_update_interval > previous // cfg.target_update_interval:
            self.update_step.sync_target()
        now = time.time()
        self.out_of_time = now >= self.deadline
        if now - self._last_log_time >= 1.0 or self.done:
            interval = now - self._last_log_time
            sps = (step - self._last_log_step) / interval
            self.log.scalar("charts/SPS", sps, step)
            shares = self.time_shares.take()
            for phase, share in shares.items():
                self.log.scalar(f"time_share/{phase}", share, step)
            if epsilon is not None:
                self.log.scalar("charts/epsilon", epsilon, step)
            self._log_pending_losses(wait=False)
            self._save_best_model()
            self.log.flush()
            if self.progress is not None:
                self.progress.update(step - self.progress.n)
                self.progress.set_postfix(
                    sps=f"{sps:.0f}", episodes=self.episodes, mean_return=f"{self.mean_return:.2f}",
                    **({} if epsilon is None else {"epsilon": f"{epsilon:.3f}"}),
                    time="/".join(f"{round(100 * share)}" for share in shares.values()) + "%")
            self._last_log_time, self._last_log_step = now, step
        # Out of time: a last checkpoint, so that the run can be resumed from here.
        if step // cfg.checkpoint_interval > previous // cfg.checkpoint_interval or self.out_of_time:
            self.checkpoint(checkpoint_extra)

    def checkpoint(self, extra: dict) -> None:
        save_checkpoint(self.run_dir, {
            **model_info(self.cfg, self.spec), **extra,
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(), "step": self.step, "updates": self.updates,
            "episodes": self.episodes, "best_mean": self.best_mean,
            "wall_time": self.log.wall_time, "recent_returns": list(self.recent_returns),
        }, self.replay, self.step)

    def close(self) -> TrainResult:
        """Closes the logs and prints how the run ended."""
        self._log_pending_losses(wait=True)
        self._save_best_model()
        if self.progress is not None:
            self.progress.close()
        self.log.close()
        cfg = self.cfg
        stopped = (f"Solved in {self.step} steps" if self.solved else f"Stopped after {self.step} steps"
                   + (f" (time limit of {cfg.max_minutes:g} minutes)" if self.out_of_time else ""))
        print(stopped + f" ({self.episodes} episodes, {self.log.wall_time:.0f} s): mean return of "
              f"the last {len(self.recent_returns)} episodes {self.mean_return:.2f}; run folder "
              f"{self.run_dir}", flush=True)
        return TrainResult(self.run_dir, self.step, self.episodes, self.mean_return, self.solved)


def _progress_bar(cfg: Config, step: int):
    if not cfg.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=cfg.total_steps, initial=step, unit="step", dynamic_ncols=True,
                file=sys.stderr)
