"""Package layout only (metadata is in pyproject.toml): the top-level app/, data/ and circuits/ folders go into the
wheel as `workbench_app`, `workbench._data` and `workbench._circuits` (read through importlib.resources)."""

from setuptools import find_namespace_packages, setup


def _packages(top: str) -> list[str]:
    return find_namespace_packages(include=[top, f"{top}.*"], exclude=["*__pycache__*", f"{top}.assets*"])


APP = ["workbench_app" + name[len("app"):] for name in _packages("app")]

setup(
    packages=[*_packages("workbench"), *APP, "workbench._data", "workbench._circuits"],
    package_dir={"workbench_app": "app", "workbench._data": "data", "workbench._circuits": "circuits"},
    package_data={
        "workbench_app": ["assets/*"],
        "workbench.engine.kernels": ["*.c"],  # compiled on first use (workbench.engine.kernels)
        "workbench._data": ["sinks/*.json", "sinks/*.md", "counterfactual_qa/*.json", "reasoning/*.json",
                            "plans/*.toml"],
        "workbench._circuits": ["*.toml", "*.scores.parquet"],
    },
    include_package_data=False,
)
