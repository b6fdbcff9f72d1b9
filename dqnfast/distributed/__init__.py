"""Distributed acting (Ape-X, Horgan et al. 2018) on Ray: ``python -m dqnfast.train
--actors N [--ray-address ADDRESS] ...``.

Each of ``N`` actors (``actor``) runs its own ``num_envs`` environments and a CPU copy
of the Q-network, plays with its own epsilon from the Ape-X ladder, and sends chunks
of experience that carry each frame once, with first priorities computed from its
own network (``chunks``). The learner (``learner_loop``) owns the replay buffer and the
update, adds the chunks as they arrive, keeps the replay ratio of the preset
(``gradient_steps`` updates per ``train_frequency * num_envs`` env steps), and
publishes its weights every ``weight_sync_interval`` updates. Logs, checkpoints and
``--resume`` are the single-process loop's (``dqnfast.learner``); ``episodes.csv``
names the actor of each episode. Ray is the ``distributed`` extra.
"""
from dqnfast.distributed.learner_loop import train_distributed

__all__ = ["train_distributed"]
