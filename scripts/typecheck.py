"""Run mypy --strict on the lcfix package.

The import package is assembled from three folders (sdk/ -> lcfix, adapters/ -> lcfix.adapters,
cli/ -> lcfix.cli) by setuptools' package-dir; mypy cannot follow the editable-install finder,
so this mirrors the package as symlinks under .typecheck/ and checks that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    tree = ROOT / ".typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    pkg = tree / "lcfix"
    pkg.mkdir(parents=True)
    for f in (ROOT / "sdk").iterdir():
        if f.suffix in (".py", ".typed"):
            (pkg / f.name).symlink_to(f)
    (pkg / "adapters").symlink_to(ROOT / "adapters", target_is_directory=True)
    (pkg / "cli").symlink_to(ROOT / "cli", target_is_directory=True)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "-p",
        "lcfix",
    ]
    return subprocess.call(cmd, cwd=tree)


if __name__ == "__main__":
    sys.exit(main())
