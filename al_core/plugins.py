"""Plugins: the researcher's own models, strategies and datasets, registered without a fork.

A sweep's top-level `plugins:` list names Python modules (`my_strategies`) or files
(`plugins/my_model.py`; a relative path is taken from the sweep file's directory, which is also
searched for module names). Each is imported when the sweep is validated, on the login node, and
again in every job before its run (`al_core.loop.Run`); it registers its objects with the
project's registries (`STRATEGIES.register("name")(MyStrategy())`, `@MODELS.register("name")`,
`DATASETS`). Refused, as one `error:` line naming the plugin: an import that fails, a name that
is already registered or that cannot stand in a run id (letters, digits and '_' only), a plugin
that registers nothing.

Each plugin's source (the file, or every .py file of a package) is hashed; the hashes are part of
every run's config (run.json, checkpoints), so a changed plugin is a changed config on resume,
and a job refuses to run a plugin whose source changed since the sweep was validated (checked
before the plugin is imported).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from al_core.errors import ConfigError
from al_core.registry import InvalidName

# resolved source file -> (entry, sha256) of every plugin imported in this process
_LOADED: dict[str, tuple[str, str]] = {}


def _registries() -> dict:
    from al_core import registry

    return registry.REGISTRIES


def _snapshot() -> dict[str, set[str]]:
    return {kind: set(reg.names()) for kind, reg in _registries().items()}


def source_hash(file: Path) -> str:
    """sha256 of a plugin's source: the file, or for a package (`__init__.py`) every .py file under it."""
    files = sorted(file.parent.rglob("*.py")) if file.name == "__init__.py" else [file]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(file.parent)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def locate(entry: object, base: Path) -> Path:
    """The source file of one `plugins:` entry (a .py path, or the module's file), without importing it."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"plugins: expected module names or paths to .py files, got {entry!r}")
    if _is_path(entry):
        path = Path(entry).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if path.suffix != ".py" or not path.is_file():
            raise ConfigError(
                f"plugin {entry!r}: no such .py file ({path}); expected a path relative to the sweep file's directory"
            )
        return path
    local = [base / f"{entry.replace('.', '/')}.py", base / entry.replace(".", "/") / "__init__.py"]
    for p in local:
        if p.is_file():
            return p.resolve()
    try:
        spec = importlib.util.find_spec(entry)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"plugin {entry!r}: cannot be found ({e}); expected an importable module name or a .py path") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ConfigError(
            f"plugin {entry!r}: no such module (searched {base} and sys.path); expected an importable module name or a .py path"
        )
    return Path(spec.origin).resolve()


def resolve(entries: object, sweep_path: str) -> tuple[dict, dict]:
    """Import a sweep's `plugins:` list. Returns (entry -> source hash, entry -> source file)."""
    if entries is None:
        return {}, {}
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(f"plugins: expected a list of module names or .py paths, got {entries!r}")
    base = Path(sweep_path).resolve().parent if sweep_path else Path.cwd()
    hashes, files = {}, {}
    for entry in entries:
        file = locate(entry, base)
        if entry in hashes:
            raise ConfigError(f"plugin {entry!r}: listed twice in plugins")
        hashes[entry], files[entry] = import_plugin(entry, file), str(file)
    return hashes, files


def load_plugins(cfg) -> None:
    """In a job (or any process given a RunConfig): import the run's plugins and check their sources
    are the ones the sweep was validated with."""
    for entry, want in getattr(cfg, "plugins", {}).items():
        file = Path(cfg.plugin_files.get(entry, "")) if getattr(cfg, "plugin_files", None) else Path()
        if not file.is_file():
            raise ConfigError(
                f"plugin {entry!r}: source {str(file)!r} not found on {_host()}; expected the file the sweep was validated with"
            )
        have = source_hash(file.resolve())  # before importing: a changed plugin runs none of its code
        if have != want:
            raise ConfigError(
                f"plugin {entry!r}: its source {file} changed since the sweep was validated "
                f"(hash {have}, expected {want}); expected the same source, or validate the sweep again"
            )
        import_plugin(entry, file)


def _module_name(entry: str, file: Path) -> str:
    """The module name a plugin is imported under: its own (a dotted entry), else one made from its path."""
    if _is_path(entry):
        return f"al_plugin_{file.stem}_{hashlib.sha256(str(file).encode()).hexdigest()[:8]}"
    if entry in sys.modules:  # imported before, and not as a plugin: a library or one of the project's modules
        raise ConfigError(
            f"plugin {entry!r}: already imported by this process (a library or a module of the "
            "project); expected a module of your own that registers new names"
        )
    return entry


def _line_in(e: BaseException, file: Path) -> str:
    """ " (line N)": the last line of `file` in the traceback of `e`, or ""."""
    where, tb = "", e.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == file:
            where = f" (line {tb.tb_lineno})"
        tb = tb.tb_next
    return where


def import_plugin(entry: str, file: Path) -> str:
    """Import one plugin from `file` (once per process); returns its source hash. Raises ConfigError."""
    file = file.resolve()
    digest = source_hash(file)
    key = str(file)
    if key in _LOADED:
        return digest
    package = file.name == "__init__.py"
    name = _module_name(entry, file)
    before = _snapshot()

    def rollback() -> None:  # a plugin that fails half-way leaves nothing registered
        sys.modules.pop(name, None)
        for kind, reg in _registries().items():
            for added in set(reg.names()) - before[kind]:
                reg.forget(added)

    try:
        spec = importlib.util.spec_from_file_location(
            name, file, submodule_search_locations=[str(file.parent)] if package else None
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except ValueError as e:
        rollback()
        if isinstance(e, ConfigError):  # the plugin's own check of its settings: its message, named
            raise ConfigError(f"plugin {entry!r}: {e}") from None
        if isinstance(e, InvalidName):
            raise ConfigError(f"plugin {entry!r}{_line_in(e, file)}: invalid name: {e}") from None
        if "registered twice" in str(e):
            raise ConfigError(
                f"plugin {entry!r}: name clash: {e}; expected names not already registered (built in or by another plugin)"
            ) from None
        raise ConfigError(f"plugin {entry!r}: import failed: ValueError: {e}") from None
    except BaseException as e:  # noqa: BLE001 - any failure of a user's module is reported as one line
        rollback()
        if isinstance(e, KeyboardInterrupt):
            raise
        raise ConfigError(f"plugin {entry!r}: import failed{_line_in(e, file)}: {type(e).__name__}: {e}") from None
    after = _snapshot()
    added = {kind: sorted(after[kind] - before[kind]) for kind in after}
    if not any(added.values()):
        raise ConfigError(
            f"plugin {entry!r} ({file}) registers nothing; expected it to register a model, strategy "
            'or dataset, e.g. STRATEGIES.register("my_strategy")(MyStrategy())'
        )
    _LOADED[key] = (entry, digest)
    return digest


def _host() -> str:
    import socket

    return socket.gethostname()
