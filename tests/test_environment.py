"""The environment recipe: one package list, and the launcher's choice of environment."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_launcher_uses_the_current_python_when_dolfinx_imports():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PRTE_"))}
    out = subprocess.run(
        [str(ROOT / "docker" / "run"), "python3", "-c", "import dolfinx"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "[docker/run] environment: current python" in out.stderr


def test_launcher_without_a_command_is_a_usage_error():
    out = subprocess.run([str(ROOT / "docker" / "run")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "usage" in out.stderr


def test_dockerfile_and_rootfs_install_the_same_lists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    build = (ROOT / "docker" / "build-rootfs").read_text()
    for listing in ("packages.txt", "pypi.txt"):
        assert listing in dockerfile and listing in build
    packages = [
        line.strip()
        for line in (ROOT / "docker" / "packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "python3-dolfinx",
        "python3-dolfinx-mpc",
        "python3-scifem",
        "python3-gmsh",
        "python3-pyvista",
        "xvfb",
    ):
        assert needed in packages
    assert "dolfinx-external-operator" in (ROOT / "docker" / "pypi.txt").read_text()
    # mmdebstrap installs Recommends; the image must too, or the two environments differ
    assert "--no-install-recommends" not in dockerfile
