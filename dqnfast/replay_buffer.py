"""The replay buffer: each frame stored once, stacks rebuilt when sampling."""
import math
import threading
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from dqnfast import ops
from dqnfast.replay_inputs import (NP_BOOL, NP_FLOAT32, NP_INT64, ArrayLike, as_flags, as_float32,
                                   as_floats, as_int64, as_tensor, check_host_rows,
                                   checked_device, from_numpy, numpy_dtype, require_fraction,
                                   require_int, require_priority_eps, to_device)
from dqnfast.replay_storage import ReplayStorage, sampleable_total

# Spare frames beyond one per transition cost at most this many bytes per transition
# (see ReplayBuffer's docstring: episode starts take frame_stack frames).
_RESERVE_BYTES_PER_TRANSITION = 64


class Batch(NamedTuple):
    """One sampled batch, on the buffer's ``device``.

    ``obs`` and ``next_obs`` are (batch, *obs_shape) of ``obs_dtype``; the other fields
    are (batch,). For n-step returns (``n_step=1``: one step) ``reward`` (float32) is the
    discounted sum of the window's rewards and ``next_obs`` the observation after its
    last step; ``discount`` (float32) multiplies the bootstrapped value: ``gamma ** k``
    for a window of ``k`` steps, 0 if the episode terminated in it (``terminated``,
    bool, says the same). Truncated windows bootstrap from their true final
    ``next_obs``. ``action`` is the first step's (int64). ``index`` (int64) names the
    transition for ``ReplayBuffer.update_priorities``; ``weight`` (float32) is its
    importance weight (ones without prioritized replay).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    discount: torch.Tensor
    index: torch.Tensor
    weight: torch.Tensor


class ReplayBuffer:
    """A circular replay buffer for DQN that stores every frame once, with n-step
    returns and proportional prioritized replay.

    Layout. The buffer is split evenly between the ``num_envs`` environments; each
    keeps its own stream, so environments never mix. Per environment there are two
    rings: ``capacity // num_envs`` transition slots and ``frame_capacity // num_envs``
    frames. Transitions and frames are numbered by how many were ever written to
    that environment (absolute numbers); number ``n`` lives at ``n % ring size``.

    Transitions. Transition ``n`` stores its action, reward, terminated and
    truncated flags, and the absolute position ``p`` of the newest frame of its
    ``obs``. With ``frame_stack=k`` its ``obs`` is frames ``p-k+1 .. p`` and its
    ``next_obs`` frames ``p-k+2 .. p+1``: a transition adds one frame, the newest
    of ``next_obs``. ``next_obs[:-1]`` must equal ``obs[1:]`` (else ValueError).

    Episode starts. When an environment's previous transition ended (terminated
    or truncated), or its ``obs`` is not the stored ``next_obs`` of its previous
    transition, a new stream starts: all ``k`` frames of ``obs`` are stored as they
    came (zero-padded or repeated, whatever the environment gave). So a stack never
    spans two episodes, and an episode of ``L`` steps takes ``L + k`` frames.

    n-step windows. The window of transition ``t`` is ``t, t+1, ...``: ``n_step``
    transitions of its stream, fewer where the stream ends first (a terminated or
    truncated transition, or a restart without either flag, which is treated like a
    truncation: the window bootstraps from its last transition's own ``next_obs``).
    A window of ``k`` steps gives ``reward`` = sum of ``gamma**i * r[t+i]`` over
    ``i < k``, ``next_obs`` = that of ``t+k-1``, and ``discount`` = ``gamma**k``, or 0
    if ``t+k-1`` terminated. Frames are not copied for this: n-step costs no memory.

    Sampleable transitions. Transition ``n`` of an environment is sampleable iff
    ``first_valid <= n < transitions_written - pending``. ``first_valid`` is the
    oldest transition whose slot has not been reused (``n >= transitions_written -
    capacity_per_env``) and whose oldest frame has not been overwritten (``p - k + 1
    >= frames_written - frame_capacity_per_env``). ``pending`` is the newest
    ``min(n_step - 1, length of the open stream)`` transitions of a stream still
    running: their windows are not complete yet, so the last ``n_step - 1``
    transitions written to an environment wait there until more steps (or the
    episode's end) arrive. Both limits only move forward, so the sampleable
    transitions are one contiguous run per environment, ``add`` advances them in
    amortized O(1), and ``len(buffer)`` counts them. When short episodes use up the
    spare frames, the oldest transitions leave early and ``len(buffer)`` stays below
    ``capacity``; pass a larger ``frame_capacity`` to keep them.

    Sampling. Uniform (default): one random number picks one sampleable transition
    in O(num_envs), without rejection. Prioritized (``prioritized=True``):
    transition ``i`` is drawn with probability ``p_i / sum(p)``, ``p_i = (|priority| +
    priority_eps) ** alpha``; new transitions get the largest priority given so far (1
    at first) unless ``add`` is passed theirs. Sum and min trees over all slots
    (O(log capacity) per draw; sums in float64) hold only sampleable transitions; a
    batch is stratified (draw ``b`` of ``B`` lies in the ``b``-th of ``B`` equal
    slices of the total priority) and carries importance weights ``(N P(i)) **
    -beta`` divided by the largest any sampleable transition could get. ``beta`` may be
    changed between calls (annealing); ``update_priorities`` takes a batch's
    ``index``: environment and absolute transition number, ``number * num_envs +
    env``, so an update for a transition overwritten since it was sampled is
    ignored.

    Devices. ``storage_device`` holds the frames, metadata and trees (host memory
    by default; ``"cuda"`` keeps the whole buffer in GPU memory, added to, sampled
    and reprioritized by CUDA kernels without waiting for the GPU). ``device`` is
    where batches are delivered. ``"cuda"`` means the current GPU and equals
    ``"cuda:<its index>"``: both devices are kept with their index.

    Batches. ``sample`` writes into tensors preallocated per batch size (from host
    storage to a CUDA ``device``: pinned host memory, then one asynchronous copy).
    A returned ``Batch`` is valid until the next ``sample`` call with the same batch
    size; ``clone()`` what must outlive it.

    Values. Actions are ints in ``[0, num_actions)`` (``num_actions=None``: any
    non-negative int), taken by value from any integer dtype; rewards and float
    observations must be finite. ``add`` and ``add_frames`` refuse anything else with
    ValueError and store nothing.

    Threads. ``add``, ``sample`` and ``update_priorities`` hold one lock while they
    touch the storage, so an acting thread may add while a learning thread samples.
    """

    def __init__(self, capacity: int, obs_shape: Sequence[int], *, num_envs: int = 1,
                 frame_stack: int = 1, obs_dtype: torch.dtype = torch.uint8,
                 device: Union[str, torch.device] = "cpu", seed: Optional[int] = None,
                 frame_capacity: Optional[int] = None,
                 storage_device: Union[str, torch.device] = "cpu", n_step: int = 1,
                 gamma: float = 0.99, prioritized: bool = False, alpha: float = 0.6,
                 beta: float = 0.4, priority_eps: float = 1e-6,
                 num_actions: Optional[int] = None):
        require_int("num_envs", num_envs, minimum=1)
        require_int("frame_stack", frame_stack, minimum=1)
        require_int("capacity", capacity, minimum=num_envs)
        require_int("n_step", n_step, minimum=1)
        if num_actions is not None:
            require_int("num_actions", num_actions, minimum=1)
        obs_shape = tuple(obs_shape)
        if not obs_shape or not all(isinstance(d, int) and d > 0 for d in obs_shape):
            raise ValueError(f"obs_shape must be a non-empty tuple of positive ints, got {obs_shape}")
        if frame_stack > 1 and obs_shape[0] != frame_stack:
            raise ValueError(f"with frame_stack={frame_stack}, obs_shape must start with "
                             f"{frame_stack} (stacked frames first), got {obs_shape}")
        if not isinstance(obs_dtype, torch.dtype):
            raise TypeError(f"obs_dtype must be a torch.dtype, got {obs_dtype!r}")
        per_env = capacity // num_envs
        if per_env < n_step:
            raise ValueError(f"capacity // num_envs must be at least n_step={n_step} (a whole "
                             f"window per environment), got {per_env}")
        self.gamma = require_fraction("gamma", gamma)
        if not isinstance(prioritized, bool):
            raise TypeError(f"prioritized must be a bool, got {type(prioritized).__name__}")
        self.alpha = require_fraction("alpha", alpha)
        beta = require_fraction("beta", beta)
        self.priority_eps = require_priority_eps(priority_eps)
        self.device = checked_device(device, "device")
        self.storage_device = checked_device(storage_device, "storage_device")
        if self.storage_device.type == "cuda" and not ops.has_cuda_kernels():
            raise RuntimeError("storage_device='cuda' needs dqnfast's CUDA kernels, but this build "
                               "has none: reinstall where nvcc and a CUDA build of torch are "
                               "present (DQNFAST_CUDA=1 forces them)")

        self.capacity = capacity
        self.obs_shape = obs_shape
        self.num_envs = num_envs
        self.frame_stack = frame_stack
        self.obs_dtype = obs_dtype
        self.n_step = n_step
        self.prioritized = prioritized
        self.num_actions = num_actions
        self._op_num_actions = num_actions or 0  # the ops' spelling of "no bound known"
        frame_shape = obs_shape[1:] if frame_stack > 1 else obs_shape
        if frame_capacity is None:
            frame_bytes = math.prod(frame_shape) * obs_dtype.itemsize
            reserve = math.ceil(per_env * _RESERVE_BYTES_PER_TRANSITION / frame_bytes)
            frame_capacity = (per_env + min(per_env * frame_stack, max(frame_stack + 1, reserve))) * num_envs
        # A whole window's frames must fit, else its first transition is evicted first.
        require_int("frame_capacity", frame_capacity, minimum=(frame_stack + n_step) * num_envs)
        self.frame_capacity = frame_capacity

        self._storage = ReplayStorage(num_envs, per_env, frame_capacity // num_envs, frame_shape,
                                      obs_dtype, prioritized, self.storage_device)
        # A tensor, so that a sample captured in a CUDA graph reads the current value.
        self._beta_tensor = torch.zeros(1, dtype=torch.float64, device=self.storage_device)
        self.beta = beta  # checked by the property
        self._generator = torch.Generator(device=self.storage_device)
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)
        # Host storage: len() reads the counters through numpy, without torch overhead.
        self._counters_view = (self._storage.counters.numpy()
                               if self.storage_device.type == "cpu" else None)
        self._all_env_ids = torch.arange(num_envs)
        self._host_storage = self.storage_device.type == "cpu"
        self._np_obs_dtype = numpy_dtype(obs_dtype)
        self._outputs = {}
        self._lock = threading.Lock()

    @property
    def beta(self) -> float:
        """Exponent of the importance weights, in [0, 1]; may change between samples
        (also between replays of a captured ``sample_in_graph``)."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = require_fraction("beta", value)
        self._beta_tensor.fill_(self._beta)

    # -- adding -------------------------------------------------------------------------

    def add(self, obs: ArrayLike, action: ArrayLike, reward: ArrayLike, next_obs: ArrayLike,
            terminated: ArrayLike, truncated: ArrayLike, *,
            env_ids: Optional[ArrayLike] = None, priority: Optional[ArrayLike] = None) -> None:
        """Adds one transition per environment; each argument has leading dim num_envs.

        ``next_obs`` is the observation the step returned: for a terminated or
        truncated step, the true final observation (not the reset one).
        ``env_ids`` (distinct indices) adds row i to environment ``env_ids[i]`` only,
        for vector envs that spend a step on resetting (envpool, gymnasium's
        next-step autoreset): leave those environments out of that step's add.
        ``priority`` (prioritized buffers; finite, non-negative, one per row, e.g.
        an actor's |TD error|) replaces the largest priority so far as the new
        transitions' priority.

        A call whose ``next_obs[:, :-1]`` is not ``obs[:, 1:]``, or with a value the
        buffer refuses (see Values in the class docstring), raises ValueError and
        stores nothing. With GPU storage, ``add`` never waits for the GPU (acting
        overlaps a queued update), so where the checks happen depends on the inputs:
        host inputs (numpy arrays, CPU tensors) are checked on the host before the
        upload and raise here; for CUDA tensors the GPU checks, the call stores
        nothing, and the ValueError comes from the next call that waits for the GPU
        anyway: ``len()`` or ``sample()``.
        """
        # Host storage: the op checks, before it writes. GPU storage: host inputs are
        # checked here, before the upload.
        upload = self._host_storage
        obs = self._input(obs, "obs", self._np_obs_dtype, upload=upload)
        next_obs = self._input(next_obs, "next_obs", self._np_obs_dtype, upload=upload)
        action = self._input(action, "action", NP_INT64, as_int64, upload=upload)
        reward = self._input(reward, "reward", NP_FLOAT32, as_float32, upload=upload)
        if not self._host_storage:
            check_host_rows(obs, next_obs, action, reward, self.frame_stack, self.num_actions)
            obs, next_obs, action, reward = (to_device(t, self.storage_device)
                                             for t in (obs, next_obs, action, reward))
        terminated = self._input(terminated, "terminated", NP_BOOL, as_flags)
        truncated = self._input(truncated, "truncated", NP_BOOL, as_flags)
        if env_ids is None:
            env_ids = self._all_env_ids
        else:
            # Checked on the host: distinct and in range.
            env_ids = as_int64(to_device(as_tensor(env_ids, "env_ids"), torch.device("cpu")),
                               "env_ids")
        if priority is not None:
            if not self.prioritized:
                raise ValueError("add(priority=...) needs a prioritized buffer (prioritized=True)")
            priority = as_floats(to_device(as_tensor(priority, "priority"), self.storage_device),
                                 "priority")
        with self._lock:
            ops.replay_add(self._storage, obs, next_obs, action, reward, terminated, truncated,
                           env_ids, priority, self.frame_stack, self.n_step, self.alpha,
                           self.priority_eps, self._op_num_actions)

    def add_frames(self, frames: ArrayLike, obs_pos: ArrayLike, action: ArrayLike,
                   reward: ArrayLike, terminated: ArrayLike, truncated: ArrayLike, *,
                   env_ids: ArrayLike, priority: Optional[ArrayLike] = None) -> None:
        """Adds transitions whose stacks are read from one array of frames, as a
        distributed actor's chunk carries them (``dqnfast.distributed.chunks``).

        ``frames`` is (F, *frame_shape) (for ``frame_stack=1`` a frame is a whole
        observation). Row i has ``obs`` = ``frames[p : p+k]`` and ``next_obs`` =
        ``frames[p+1 : p+k+1]``, ``p = obs_pos[i]``, ``k = frame_stack`` (``k = 1``:
        ``frames[p]`` and ``frames[p+1]``), and goes to environment ``env_ids[i]``;
        the other arguments have one entry per row, as in ``add``. Rows are added in
        order, so one environment's rows follow its stream: the same as one ``add`` per
        row, in one call and without building the stacks. A call with an ``obs_pos``
        or ``env_ids`` entry out of range, or a value the buffer refuses, raises
        ValueError and stores nothing.
        Host storage only (a learner keeps such a buffer in host memory and samples
        into pinned batches for its GPU).
        """
        if not self._host_storage:
            raise ValueError(f"add_frames needs host storage, this buffer is stored on "
                             f"{self.storage_device}: make it with storage_device='cpu'")
        tensors = [self._input(v, name, dtype, convert) for v, name, dtype, convert in (
            (frames, "frames", self._np_obs_dtype, None),
            (obs_pos, "obs_pos", NP_INT64, as_int64), (action, "action", NP_INT64, as_int64),
            (reward, "reward", NP_FLOAT32, as_float32),
            (terminated, "terminated", NP_BOOL, as_flags),
            (truncated, "truncated", NP_BOOL, as_flags),
            (env_ids, "env_ids", NP_INT64, as_int64))]
        if priority is not None:
            if not self.prioritized:
                raise ValueError("add_frames(priority=...) needs a prioritized buffer "
                                 "(prioritized=True)")
            priority = as_floats(as_tensor(priority, "priority"), "priority")
        with self._lock:
            ops.replay_add_frames(self._storage, *tensors, priority, self.frame_stack,
                                  self.n_step, self.alpha, self.priority_eps,
                                  self._op_num_actions)

    def _input(self, value: ArrayLike, name: str, np_dtype, convert=None, *,
               upload: bool = True) -> torch.Tensor:
        """An input of add as a tensor, checked and cast where it is, then (``upload``)
        moved to the storage device. Host storage and a numpy array of the stored dtype
        (the common case) skip every conversion: the tensor shares the array (the op
        only reads it) and the op checks shapes and dtypes itself."""
        if type(value) is np.ndarray and value.dtype is np_dtype and self._host_storage:
            return from_numpy(value)
        tensor = as_tensor(value, name)
        if convert is not None:
            tensor = convert(tensor, name)
        return to_device(tensor, self.storage_device) if upload else tensor

    # -- sampling -----------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of sampleable transitions."""
        counters = self._counters_view
        if counters is None:  # GPU storage: this waits for the GPU
            counters = self._device_counters()
        return sampleable_total(counters, self.n_step)

    def _device_counters(self) -> np.ndarray:
        """The counters of GPU storage, read in one copy with the count of adds the GPU
        rejected since the last read (and why); raises ValueError if there were any."""
        counters, rejected_adds = self._storage.counters, self._storage.rejected_adds
        state = torch.cat([counters.flatten(), rejected_adds]).cpu().numpy()
        rejected, reasons = int(state[-2]), int(state[-1])
        if rejected:
            # Taken off rather than zeroed: an add queued since the read keeps its count.
            rejected_adds[0].sub_(rejected)
            rejected_adds[1].bitwise_and_(~reasons)
            found = "; ".join(text for bit, text in ops.REJECTED_REASONS.items() if reasons & bit)
            raise ValueError(
                f"{rejected} earlier add call(s) with CUDA tensors stored nothing: they held "
                f"{found}; the GPU found it, so it is reported at this call, the first since "
                "to wait for the GPU")
        return state[:-2].reshape(counters.shape)

    def sample(self, batch_size: int) -> Batch:
        """Samples ``batch_size`` sampleable transitions (with replacement): uniformly,
        or stratified by priority with ``prioritized=True``."""
        require_int("batch_size", batch_size, minimum=1)
        with self._lock:
            stored = len(self)
            if stored == 0:
                raise ValueError("cannot sample from an empty replay buffer")
            if batch_size > stored:
                raise ValueError(f"batch_size {batch_size} is larger than the {stored} "
                                 "transitions stored")
            staging, out, copied = self._output_tensors(batch_size)
            if copied is not None:
                copied.synchronize()  # the last copy out of `staging` must be done
            self._draw_into(staging)
            if copied is not None:
                for name, tensor in out.items():
                    tensor.copy_(staging[name], non_blocking=True)
                copied.record()
        return Batch(**out)

    def update_priorities(self, index: ArrayLike, priority: ArrayLike) -> None:
        """Sets ``p_i = (|priority_i| + priority_eps) ** alpha`` for the transitions a
        batch's ``index`` names (on any device; e.g. the batch's |TD errors|).

        A transition overwritten since it was sampled (or no longer sampleable) is
        left alone. Of duplicate indices in one call the largest priority wins.
        Priorities must be finite and non-negative, and indices must come from this
        buffer: on host storage anything else raises ValueError and changes nothing.
        On GPU storage the values are not read on the host (no waiting for the GPU,
        so the call can be captured in a CUDA graph): such entries are skipped.
        """
        if not self.prioritized:
            raise ValueError("update_priorities needs a prioritized buffer (prioritized=True)")
        index = as_int64(to_device(as_tensor(index, "index"), self.storage_device), "index")
        priority = as_floats(to_device(as_tensor(priority, "priority"), self.storage_device),
                             "priority")
        if index.dim() != 1 or priority.shape != index.shape:
            raise ValueError(f"expected index and priority of the same shape (batch,), got "
                             f"{tuple(index.shape)} and {tuple(priority.shape)}")
        with self._lock:
            ops.replay_update_priorities(self._storage, index, priority, self.n_step, self.alpha,
                                         self.priority_eps)

    @property
    def generator(self) -> torch.Generator:
        """The generator that draws the sampled indices (on ``storage_device``)."""
        return self._generator

    def sample_in_graph(self, batch_size: int) -> Batch:
        """``sample`` for recording into a CUDA graph being captured: no host reads
        and no checks that need them, so each replay draws a new batch from whatever
        the buffer holds by then (its size and write position are read on the GPU).
        Needs ``storage_device`` and ``device`` both the same CUDA GPU, and the graph must have
        registered ``self.generator`` before its capture began. An empty buffer yields
        all-zero rows (a GPU kernel cannot raise without a host sync): replay after the
        first ``add``. Replays must be ordered with ``add`` on one CUDA stream; the
        lock is not taken when the graph replays."""
        require_int("batch_size", batch_size, minimum=1)
        if self.storage_device.type != "cuda" or self.device != self.storage_device:
            raise ValueError("sample_in_graph needs storage_device and device both CUDA, the "
                             f"same GPU; got storage_device={self.storage_device}, "
                             f"device={self.device}")
        with self._lock:
            out, _, _ = self._output_tensors(batch_size)
            self._draw_into(out)
        return Batch(**out)

    def _draw_into(self, staging: dict) -> None:
        """Draws len(staging["action"]) transitions into the tensors ``staging``."""
        random_bits = torch.randint(0, 2**62, staging["action"].shape, generator=self._generator,
                                    device=self.storage_device)
        ops.replay_sample(self._storage, random_bits, self.frame_stack, self.n_step, self.gamma,
                          self._beta_tensor, staging)

    def _output_tensors(self, batch_size: int):
        """(tensors the op writes, tensors returned, CUDA event of the copy between or None)."""
        if batch_size not in self._outputs:
            copied = self.device != self.storage_device
            # Host storage to a GPU: the op writes pinned memory, copied asynchronously.
            on = dict(device=self.storage_device,
                      pin_memory=copied and self.storage_device.type == "cpu")
            staging = {
                "obs": torch.empty((batch_size, *self.obs_shape), dtype=self.obs_dtype, **on),
                "next_obs": torch.empty((batch_size, *self.obs_shape), dtype=self.obs_dtype, **on),
                "action": torch.empty(batch_size, dtype=torch.int64, **on),
                "reward": torch.empty(batch_size, dtype=torch.float32, **on),
                "terminated": torch.empty(batch_size, dtype=torch.bool, **on),
                "discount": torch.empty(batch_size, dtype=torch.float32, **on),
                "index": torch.empty(batch_size, dtype=torch.int64, **on),
                "weight": torch.empty(batch_size, dtype=torch.float32, **on),
            }
            if copied:
                out = {name: torch.empty_like(t, device=self.device) for name, t in staging.items()}
                self._outputs[batch_size] = (staging, out, torch.cuda.Event())
            else:
                self._outputs[batch_size] = (staging, staging, None)
        return self._outputs[batch_size]

    # -- checkpoints --------------------------------------------------------------------

    def _config(self) -> dict:
        return {"capacity": self.capacity, "obs_shape": list(self.obs_shape),
                "num_envs": self.num_envs, "frame_stack": self.frame_stack,
                "obs_dtype": str(self.obs_dtype), "frame_capacity": self.frame_capacity,
                "n_step": self.n_step, "gamma": self.gamma, "prioritized": self.prioritized,
                "alpha": self.alpha, "priority_eps": self.priority_eps}

    def state_dict(self) -> dict:
        """The buffer's own storage tensors (not copies; with prioritized replay the
        trees, priorities and largest priority too) plus its config and RNG state.
        ``beta`` is not part of it: set it after loading, as its schedule has it.

        Save it before the next ``add``; ``torch.save`` writes the tensors directly,
        so a full buffer is checkpointed without a second copy in memory.
        """
        return {"config": self._config(), "storage": self._storage.tensors(),
                "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Copies a ``state_dict`` into this buffer, which must have the same config.

        Load the file with ``torch.load(path, mmap=True)`` (as ``load`` does) so that
        the arrays are read straight into the buffer's storage.
        """
        if not isinstance(state, dict) or set(state) != {"config", "storage", "generator"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"expected a ReplayBuffer state_dict with keys config, storage, "
                             f"generator; got {got}")
        theirs, mine = state["config"], self._config()
        if theirs != mine:
            differing = ", ".join(f"{name}={theirs.get(name)!r} (this buffer: {mine.get(name)!r})"
                                  for name in sorted(set(theirs) | set(mine))
                                  if theirs.get(name) != mine.get(name))
            raise ValueError(f"state_dict is of a buffer configured otherwise: {differing}")
        self._storage.check_loadable(state["storage"])
        if state["generator"].shape != self._generator.get_state().shape:
            raise ValueError("state_dict holds the sampling generator of a buffer stored on "
                             f"another kind of device than {self.storage_device}")
        with self._lock:
            self._storage.copy_from(state["storage"])
            self._generator.set_state(state["generator"])

    def save(self, path) -> None:
        """Writes the buffer to ``path`` (see ``state_dict``)."""
        with self._lock:
            torch.save(self.state_dict(), path)

    def load(self, path) -> None:
        """Reads a buffer written by ``save`` into this one, through a memory map."""
        self.load_state_dict(torch.load(path, mmap=True, weights_only=True))

    def __getstate__(self) -> dict:
        # Pickling (copy.deepcopy, multiprocessing) goes through the state_dict: the
        # lock and the cached output tensors are rebuilt, not copied.
        with self._lock:
            return {"device": str(self.device), "storage_device": str(self.storage_device),
                    "beta": self.beta, "num_actions": self.num_actions, **self.state_dict()}

    def __setstate__(self, state: dict) -> None:
        config = state["config"]
        self.__init__(config["capacity"], config["obs_shape"], num_envs=config["num_envs"],
                      frame_stack=config["frame_stack"],
                      obs_dtype=getattr(torch, config["obs_dtype"].removeprefix("torch.")),
                      device=state["device"], frame_capacity=config["frame_capacity"],
                      storage_device=state["storage_device"], n_step=config["n_step"],
                      gamma=config["gamma"], prioritized=config["prioritized"],
                      alpha=config["alpha"], beta=state["beta"],
                      priority_eps=config["priority_eps"], num_actions=state["num_actions"])
        self.load_state_dict({k: state[k] for k in ("config", "storage", "generator")})

    @property
    def nbytes(self) -> int:
        """Bytes of storage held, frames and metadata."""
        return self._storage.nbytes

    def __repr__(self) -> str:
        return (f"ReplayBuffer(len={len(self)}, capacity={self.capacity}, obs_shape={self.obs_shape}, "
                f"num_envs={self.num_envs}, frame_stack={self.frame_stack}, "
                f"obs_dtype={self.obs_dtype}, n_step={self.n_step}, "
                f"prioritized={self.prioritized}, device={self.device})")
