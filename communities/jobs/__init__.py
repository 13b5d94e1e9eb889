"""Community jobs; importing this package registers them."""

from . import data_cleanup_archiver  # noqa: F401
