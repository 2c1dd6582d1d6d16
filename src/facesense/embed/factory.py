"""Building embedders: :func:`make_embedder`, the one way the library builds one.

The kinds are the entries of the model registry (:data:`facesense.models.registry.EMBEDDERS`):
``fusion`` (the default, :data:`DEFAULT_EMBEDDER`: FaceNet + dlib's ResNet, each scaled
by its impostor median), the networks alone (``facenet``, ``dlib``, ``sface``) and the
other fusions, named by their parts (``facenet+dlib+sface``, ``dlib+sface``,
``facenet+sface``). Every fusion is built from its registry entry's parts.
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

    FUSION = "fusion"
    FACENET = "facenet"
    DLIB = "dlib"
    SFACE = "sface"
    FACENET_DLIB_SFACE = "facenet+dlib+sface"
    DLIB_SFACE = "dlib+sface"
    FACENET_SFACE = "facenet+sface"


DEFAULT_EMBEDDER = EmbedderKind.FUSION
"""The embedder every command, the web server and :class:`~facesense.FaceAnalyzer` use by default."""


def make_embedder(
    kind: EmbedderKind | str = DEFAULT_EMBEDDER,
    *,
    threads: int | None = None,
    **facenet_options: Any,
) -> Embedder:
    """Build an embedder by name with facesense's defaults. Models load on first use.

    Args:
        kind: ``fusion`` (default: FaceNet + dlib ResNet), a network alone (``facenet``,
            ``dlib``, ``sface``) or another fusion of them (``facenet+dlib+sface`` ...).
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
            raise ConfigError(f"{name}={value!r} is a FaceNet option; the {without} embedder has none")
