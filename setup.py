"""Packaging metadata lives in pyproject.toml; this file only maps the repo's top-level `conf/` (where users look for
the configs) into the package as `ablate/conf`, so a wheel carries every YAML and runs from any directory."""

from setuptools import find_namespace_packages, setup

CONF_PACKAGES = ["ablate.conf"] + [f"ablate.conf.{name}" for name in find_namespace_packages(where="conf")]

setup(
    packages=find_namespace_packages(include=["ablate", "ablate.*", "hydra_plugins", "hydra_plugins.*"])
    + CONF_PACKAGES,
    package_dir={"ablate.conf": "conf"},
    package_data={package: ["*.yaml"] for package in CONF_PACKAGES},
)
