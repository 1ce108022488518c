"""cdul: CLIP-driven unsupervised multi-label classification (CDUL, ICCV 2023).

The repository keeps one folder per part (``kernels/``, ``extractor/``, ``store/``,
``trainer/``, ``benchmarks/``); they install as subpackages of one ``cdul`` namespace so
their import names cannot collide with other distributions (``kernels`` and ``store``
are taken on PyPI).
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
PARTS = ("kernels", "extractor", "store", "trainer", "benchmarks")


def _packages() -> list[str]:
    """cdul and its subpackages, and each part with its own subpackages, found on disk."""
    found = ["cdul"] + [f"cdul.{p}" for p in find_packages("cdul")]
    for part in PARTS:
        found += [f"cdul.{part}"] + [f"cdul.{part}.{p}" for p in find_packages(part)]
    return found


def _version() -> str:
    for line in (HERE / "cdul" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("cdul/__init__.py has no __version__")


setup(
    name="cdul",
    version=_version(),
    description="CLIP-driven unsupervised multi-label image classification: fast extraction, "
    "a resumable Zarr store, and gradient-alignment training",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir={"cdul": "cdul", **{f"cdul.{p}": p for p in PARTS}},
    package_data={"cdul.extractor": ["model_configs/*.json"], "cdul.serve": ["static/*"]},
    # Ranges, so that `pip install .` keeps the torch an environment already has. The lower
    # bounds follow the APIs the code calls (torch.nn.utils.get_total_norm: torch 2.6, with
    # torchvision 0.21); the versions tested are the exact pins of requirements/lock.txt,
    # which scripts/env.sh installs.
    install_requires=[
        "torch>=2.6,<3",
        "torchvision>=0.21,<1",
        "open_clip_torch>=3.0",
        "triton",
        "zarr>=3.0",
        "numpy>=1.24",
        "click>=8.1",
        "PyYAML>=5.1",  # --config run.yaml
        "tqdm>=4.60",
        "fsspec>=2023.1",
        "pillow>=10",
        "faiss-cpu>=1.8",
        "matplotlib>=3.7",
        "webdataset==1.0.2",
        "pyarrow>=14",
        "starlette>=0.40",
        "uvicorn>=0.30",
    ],
    extras_require={
        "gpu": ["faiss-gpu>=1.8"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "test": [
            "pytest>=8",
            "pytest-timeout",
            "hypothesis>=6",
            "scikit-learn>=1.3",
            "scikit-image>=0.22",
            "xarray>=2024.10",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "tensorboard>=2.14",  # cdul-train --report-to tensorboard (optional at run time)
        ],
    },
    entry_points={
        "console_scripts": [
            "cdul-extract=cdul.cli.extract:main",
            "cdul-train=cdul.cli.train:main",
            "cdul-eval=cdul.cli.eval:main",
            "cdul-predict=cdul.cli.predict:main",
            "cdul-refine=cdul.cli.refine:main",
            "cdul-search=cdul.cli.search:main",
            "cdul-bench=cdul.benchmarks.run_all:main",
            "cdul-demo=cdul.demo:main",
            "cdul-report=cdul.cli.report:main",
            "cdul-export=cdul.cli.export:main",
            "cdul-serve=cdul.cli.serve:main",
        ],
    },
)
