"""Storage URIs: a local folder, or gs://, s3://, minio:// through fsspec (releases, the request log, the catalogue
change log all live under one)."""

from __future__ import annotations

import os
from typing import Any

# KFP's MinIO scheme; the S3 API of a MinIO server (endpoint from $AWS_ENDPOINT_URL, KFP's in-cluster MinIO otherwise).
MINIO_ENDPOINT = "http://minio-service.kubeflow:9000"


def storage(uri: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of a storage URI (minio:// is S3 against a MinIO endpoint)."""
    import fsspec  # deferred: its S3 and GCS backends load on first use

    if uri.startswith("minio://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL", MINIO_ENDPOINT)
        return fsspec.filesystem("s3", client_kwargs={"endpoint_url": endpoint}), uri.removeprefix("minio://")
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path
