"""Package list for setuptools (the rest of the metadata is in pyproject.toml).

`recipes/` sits at the top of the repository and ships as `patchpu_keras.recipes`
(pyproject.toml's `package-dir`); `packages.find` cannot add a package from
outside the folder it searches, so the list is built here.
"""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["patchpu_keras", "patchpu_keras.*"]) + ["patchpu_keras.recipes"])
