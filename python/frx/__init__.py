"""frx: find, make and fix over-refusal in large language models.

Kernels (Rust): :mod:`frx.dedup`, :mod:`frx.refusal`, :mod:`frx.graph`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("frx-engine")
except PackageNotFoundError:  # running from a source tree without an install
    from ._core import __version__

from .errors import FrxError

__all__ = ["__version__", "FrxError"]
