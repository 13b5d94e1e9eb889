"""The S3 backend of the archive and warehouse storages."""

from __future__ import annotations

from storages.backends.s3 import S3Storage


class ObjectS3Storage(S3Storage):
    """S3 storage that stores `.gz` objects as gzip files.

    django-storages guesses `Content-Encoding: gzip` from the name, which makes browsers
    and HTTP clients unpack archives on download; these are gzip files, not encoded JSON.
    """

    def get_object_parameters(self, name: str) -> dict:
        params = super().get_object_parameters(name)
        if name.endswith(".gz"):
            params = {**params, "ContentType": "application/gzip"}
        return params
