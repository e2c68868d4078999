"""Packaging glue: the repository root is the ``tprompt`` package.

pyproject.toml holds the metadata; this file only finds the subpackages, since
setuptools' ``packages.find`` cannot prefix them with ``tprompt.`` when the
package is the root folder (a hand-kept list once left ``tprompt.tui.screens``
out of the wheel). ``tests/test_wheel.py`` builds the wheel and runs it.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class _BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        # This file sits in the package's folder; it is not part of the package.
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "tprompt" and m[1] == "setup")]


setup(
    packages=["tprompt", *(f"tprompt.{name}" for name in find_packages(".", exclude=("tests*", "benchmarks*", "examples*")))],
    cmdclass={"build_py": _BuildPy},
)
