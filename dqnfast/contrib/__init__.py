"""Adapters to other libraries; each lives in its own module so that importing
``dqnfast`` never imports them (``dqnfast.contrib.sb3`` needs stable-baselines3)."""
