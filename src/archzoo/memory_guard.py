"""Refuse work that needs more memory than there is, before allocating it.

``require_memory(needed, what)`` compares a command's figure (``estimate_memory``
for models, the obvious product for grids) with the memory this process can
still get - the smallest of the kernel's ``MemAvailable`` (/proc/meminfo) and
what the cgroup limit leaves (cgroup v2 ``memory.max - memory.current``, v1
``memory.limit_in_bytes - memory.usage_in_bytes``), which is what a container
or a batch job may really use. ``psutil`` is asked where /proc is missing.
Without either figure nothing is refused. ``force=True`` (``--force``) skips
the check: the figures are estimates, and swap or a lazy allocator may cope.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InsufficientMemory

CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
NO_LIMIT = 1 << 60  # cgroup v1 writes ~2^63 for "unlimited"


def available_bytes() -> int | None:
    """Bytes this process can still allocate, or None if the machine does not say."""
    figures = [f for f in (_meminfo_available(), _cgroup_room()) if f is not None]
    if not figures:
        try:
            import psutil

            figures.append(int(psutil.virtual_memory().available))
        except (ImportError, OSError):
            return None
    return min(figures)


def require_memory(needed: float, what: str, *, force: bool = False, flag: str = "--force") -> None:
    """InsufficientMemory naming ``what``, the need and the memory free, unless it fits (or ``force``)."""
    if force:
        return
    free = available_bytes()
    if free is not None and needed > free:
        raise InsufficientMemory(
            f"{what} needs about {human(needed)} of memory, but only {human(free)} is available; "
            f"choose a smaller model or size, or pass {flag} to try anyway"
        )


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    for limit_file, usage_file in CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= NO_LIMIT:
            return None
        return max(int(limit) - usage, 0)
    return None


# ---- the figures the commands compare ----

TORCH_DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def config_of_source(name_or_folder: str):
    """(Config, weight dtype name) of a config name / .toml path, or of a checkpoint folder's config.json."""
    from .config import load_config

    folder = Path(name_or_folder)
    if not folder.is_dir():
        return load_config(str(name_or_folder)), "fp32"  # random init is float32
    from .models.hf import family_of
    from .models.hf.checks import check_fields
    from .models.hf.io import read_config
    from .models.hf.loading import config_of

    hf = read_config(folder)
    check_fields(hf, folder / "config.json")
    cfg = config_of(family_of(hf, folder), hf, folder / "config.json", folder.resolve().name)
    return cfg, TORCH_DTYPE_NAMES.get(str(hf.get("torch_dtype") or hf.get("dtype")), "fp32")


def require_inference_memory(name_or_folder: str, tokens: int, *, force: bool = False) -> None:
    """Weights plus the KV cache of one sequence of ``tokens`` (estimate_memory's inference figure)."""
    if force:
        return
    from .inspect import estimate_memory

    cfg, dtype = config_of_source(name_or_folder)
    need = estimate_memory(cfg, batch=1, seq_len=max(1, tokens), dtype=dtype).inference_bytes
    require_memory(need, f"{cfg.name} ({dtype} weights + KV cache of {tokens} tokens)")


def require_training_memory(name_or_folder: str, batch: int, seq_len: int, checkpointing: bool, *, force: bool = False) -> None:
    """AdamW state, gradients, weights and activations (estimate_memory's training figure)."""
    if force:
        return
    from .inspect import estimate_memory

    cfg, _ = config_of_source(name_or_folder)
    report = estimate_memory(cfg, batch=batch, seq_len=seq_len)
    need = report.training_bytes_checkpointed if checkpointing else report.training_bytes
    require_memory(need, f"training {cfg.name} at batch {batch} x {seq_len} tokens (AdamW state, gradients, activations)")
