"""xarray accessors; importing this package registers ``.dcm``."""
from .dcm import DcmAccessor

__all__ = ["DcmAccessor"]
