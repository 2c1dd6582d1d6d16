"""Building embedders: :func:`make_embedder`, the one way the library builds one.

The kinds are the entries of the model registry (:data:`facesense.models.registry.EMBEDDERS`):
``dlib+sface`` (the default, :data:`DEFAULT_EMBEDDER`: dlib's ResNet + SFace, each scaled
by its impostor median), the networks alone (``facenet``, ``dlib``, ``sface``) and the
other fusions, named by their parts (``facenet+dlib``, the default until issue 15, and
``facenet+dlib+sface``, ``facenet+sface``). Every fusion is built from its registry
entry's parts. ``fusion``, the old default's old name, still means ``facenet+dlib``.
"""

from __future__ import annotations

import enum
import inspect
from typing import TYPE_CHECKING, Any

from facesense.choices import did_you_mean, parse_choice
from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.embed.base import Embedder

__all__ = ["DEFAULT_EMBEDDER", "EmbedderKind", "make_embedder"]


class EmbedderKind(str, enum.Enum):
    """The embedders facesense ships (keys of :data:`facesense.models.registry.EMBEDDERS`)."""

    DLIB_SFACE = "dlib+sface"
    FACENET = "facenet"
    DLIB = "dlib"
    SFACE = "sface"
    FACENET_DLIB = "facenet+dlib"
    FACENET_DLIB_SFACE = "facenet+dlib+sface"
    FACENET_SFACE = "facenet+sface"

    @classmethod
    def _missing_(cls, value: object) -> EmbedderKind | None:
        """``"fusion"`` (the name of facenet+dlib while it was the default) is still accepted."""
        if isinstance(value, str) and value.strip().lower() in LEGACY_NAMES:
            return cls(LEGACY_NAMES[value.strip().lower()])
        return None


LEGACY_NAMES: dict[str, str] = {"fusion": "facenet+dlib"}
"""Old kind names still accepted (configs, scripts), and the kind each now means."""

DEFAULT_EMBEDDER = EmbedderKind.DLIB_SFACE
"""The embedder every command, the web server and :class:`~facesense.FaceAnalyzer` use by default.

dlib's ResNet + SFace since issue 15 (LFW 99.57%, 95.4% named right at 1% stranger FAR
against 81.7% for facenet+dlib, ``docs/preprocessing.md``); a gallery enrolled with
another embedder is refused with the pointer to ``facesense reembed``.
"""


def make_embedder(
    kind: EmbedderKind | str = DEFAULT_EMBEDDER,
    *,
    threads: int | None = None,
    **facenet_options: Any,
) -> Embedder:
    """Build an embedder by name with facesense's defaults. Models load on first use.

    Args:
        kind: ``dlib+sface`` (default: dlib ResNet + SFace), a network alone (``facenet``,
            ``dlib``, ``sface``) or another fusion of them (``facenet+dlib`` ...).
        threads: intra-op threads of every model (``None``: the runtime default).
        facenet_options: passed to :class:`~facesense.embed.facenet.FaceNetEmbedder`
            (``backend``, ``precision``, ``batch_size``, ``crop`` ...). For an embedder
            without FaceNet only FaceNet's default values are accepted, since they
            change nothing.

    Returns:
        A :class:`~facesense.embed.fusion.FusedEmbedder`,
        :class:`~facesense.embed.facenet.FaceNetEmbedder`,
        :class:`~facesense.embed.dlib.DlibResNetEmbedder` or
        :class:`~facesense.embed.sface.SFaceEmbedder`.

    Raises:
        ConfigError: unknown kind (with a did-you-mean), a bad option, or (for a
            fusion) a part whose impostor scale was never measured.
    """
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.embed.fusion import FusedEmbedder
    from facesense.models.registry import EMBEDDERS, FusionSpec

    kind = parse_choice(EmbedderKind, kind, "embedder")
    spec = EMBEDDERS[kind.value]
    parts = spec.parts if isinstance(spec, FusionSpec) else (kind.value,)
    _check_facenet_options(FaceNetEmbedder, facenet_options, without=None if "facenet" in parts else kind.value)
    built = [_network(p, threads, facenet_options) for p in parts]
    if not isinstance(spec, FusionSpec):
        return built[0]
    return FusedEmbedder(built, threads=threads)


def _network(key: str, threads: int | None, facenet_options: dict[str, Any]) -> Embedder:
    """One embedding network by its registry key."""
    if key == "facenet":
        from facesense.embed.facenet import FaceNetEmbedder

        return FaceNetEmbedder(threads=threads, **facenet_options)
    if key == "dlib":
        from facesense.embed.dlib import DlibResNetEmbedder

        return DlibResNetEmbedder(threads=threads)
    if key == "sface":
        from facesense.embed.sface import SFaceEmbedder

        return SFaceEmbedder(threads=threads)
    raise ConfigError(f"no embedder class for the registry's network {key!r}")  # pragma: no cover - registry/factory mismatch


def _check_facenet_options(facenet_cls: type, options: dict[str, Any], *, without: str | None) -> None:
    """Unknown options are refused; so are FaceNet options that would change nothing (no FaceNet part)."""
    params = {n: p for n, p in inspect.signature(facenet_cls).parameters.items() if n != "threads"}
    for name, value in options.items():
        param = params.get(name)
        if param is None:
            raise ConfigError(f"unknown embedder option {name!r}{did_you_mean(name, list(params))}; choose from threads, {', '.join(params)}")
        default = param.default
        if without is not None and value != default and not (isinstance(default, enum.Enum) and value == default.value):
            shown = value.value if isinstance(value, enum.Enum) else value
            raise ConfigError(f"{name}={shown!r} is a FaceNet option; the {without} embedder has none")
