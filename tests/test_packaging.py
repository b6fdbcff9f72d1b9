"""What a wheel holds: the packages setuptools finds from pyproject.toml's settings."""
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

REPO = Path(__file__).resolve().parent.parent


def test_every_package_under_dqnfast_is_packaged():
    settings = read_configuration(REPO / "pyproject.toml", expand=True)["tool"]["setuptools"]
    packaged = set(settings["packages"])
    on_disk = {".".join(init.parent.relative_to(REPO).parts)
               for init in (REPO / "dqnfast").rglob("__init__.py")}
    assert {"dqnfast", "dqnfast.distributed", "dqnfast.envs"} <= on_disk
    assert packaged == on_disk
