"""The optional extras (`pip install 'digitlab[serve]'`, `[export]`): the check that a feature's
packages are installed, and the one-line error that names the extra to install when not."""

import importlib.util

from digitlab.errors import ConfigError

# The extra of each optional package digitlab imports (see pyproject.toml).
EXTRA_OF_PACKAGE = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "swagger_ui_bundle": "serve",
    "onnx": "export",
    "onnxruntime": "export",
}


class MissingExtraError(ConfigError):
    """A feature needs an optional package that is not installed (a ConfigError, as the
    error for an ONNX runtime without onnxruntime always was)."""


def require(package: str, purpose: str) -> None:
    """MissingExtraError naming the extra to install, unless `package` can be imported."""
    if not is_installed(package):
        extra = EXTRA_OF_PACKAGE[package]
        raise MissingExtraError(
            f"{purpose} needs the {package} package, which is not installed: "
            f"install digitlab[{extra}] to use it (pip install 'digitlab[{extra}]')"
        )


def is_installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # in sys.modules as None (how tests hide a package), or without a spec
        return False
