"""Building embedders: :func:`make_embedder`, the one way the library builds one.

The kinds are the entries of the model registry (:data:`facesense.models.registry.EMBEDDERS`):
``fusion`` (the default: FaceNet + dlib's ResNet, each scaled by its impostor median),
``facenet`` and ``dlib``.
"""

from __future__ import annotations

import enum
import inspect
from typing import TYPE_CHECKING, Any

from facesense.choices import did_you_mean, parse_choice
from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.embed.base import Embedder

__all__ = ["EmbedderKind", "make_embedder"]


class EmbedderKind(str, enum.Enum):
    """The embedders facesense ships (keys of :data:`facesense.models.registry.EMBEDDERS`)."""

    FUSION = "fusion"
    FACENET = "facenet"
    DLIB = "dlib"


def make_embedder(
    kind: EmbedderKind | str = EmbedderKind.FUSION,
    *,
    threads: int | None = None,
    **facenet_options: Any,
) -> Embedder:
    """Build an embedder by name with facesense's defaults. Models load on first use.

    Args:
        kind: ``fusion`` (default: FaceNet + dlib ResNet), ``facenet`` or ``dlib``.
        threads: intra-op threads of every model (``None``: the runtime default).
        facenet_options: passed to :class:`~facesense.embed.facenet.FaceNetEmbedder`
            (``backend``, ``precision``, ``batch_size``, ``crop`` ...). For ``dlib``
            only FaceNet's default values are accepted, since they change nothing.

    Returns:
        A :class:`~facesense.embed.fusion.FusedEmbedder`,
        :class:`~facesense.embed.facenet.FaceNetEmbedder` or
        :class:`~facesense.embed.dlib.DlibResNetEmbedder`.

    Raises:
        ConfigError: unknown kind (with a did-you-mean), a bad option, or (for the
            fusion) a FaceNet crop whose impostor scale was never measured.
    """
    from facesense.embed.dlib import DlibResNetEmbedder
    from facesense.embed.facenet import FaceNetEmbedder
    from facesense.embed.fusion import FusedEmbedder

    kind = parse_choice(EmbedderKind, kind, "embedder")
    _check_facenet_options(FaceNetEmbedder, facenet_options, dlib=kind is EmbedderKind.DLIB)
    if kind is EmbedderKind.DLIB:
        return DlibResNetEmbedder(threads=threads)
    facenet = FaceNetEmbedder(threads=threads, **facenet_options)
    if kind is EmbedderKind.FACENET:
        return facenet
    return FusedEmbedder([facenet, DlibResNetEmbedder(threads=threads)], threads=threads)


def _check_facenet_options(facenet_cls: type, options: dict[str, Any], *, dlib: bool) -> None:
    """Unknown options are refused; so are FaceNet options that would change nothing (dlib)."""
    params = {n: p for n, p in inspect.signature(facenet_cls).parameters.items() if n != "threads"}
    for name, value in options.items():
        param = params.get(name)
        if param is None:
            raise ConfigError(f"unknown embedder option {name!r}{did_you_mean(name, list(params))}; choose from threads, {', '.join(params)}")
        default = param.default
        if dlib and value != default and not (isinstance(default, enum.Enum) and value == default.value):
            raise ConfigError(f"{name}={value!r} is a FaceNet option; the dlib embedder has none")
