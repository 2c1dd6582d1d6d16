"""Score-level fusion of several embedders into one vector: facesense's default embedder.

Each part's unit vector is divided by that model's *typical impostor distance* (the
median Euclidean distance between embeddings of two different people), the parts are
concatenated and the result L2-normalised again. The squared distance between two fused
vectors is then proportional to ``sum_i (d_i / m_i)**2``: every model's distance counts
in units of its own impostor scale, so neither dominates because its space is larger.
The scales are model constants measured once on faces outside the evaluation sets
(``scripts/fit_dlib_template.py`` on the WIDER FACE subset), kept in the model registry
(:data:`facesense.models.registry.IMPOSTOR_MEDIANS`), and are part of the model id.

When every part can run as an ONNX graph (``onnx_path``/``prepare``/``finish``, as
FaceNet on ONNX Runtime, dlib's ResNet and SFace do), the parts' graphs are merged into one
ONNX Runtime session (:func:`facesense.models.runtime.merge_models`) and run with one
call: two sessions called back to back fight over the cores with their spinning
threads (22 ms per face against 7.4 ms merged, on 2 cores).

The default, ``dlib+sface``, fuses dlib's ResNet (128-d, metric-learned on faces aligned
by dlib's landmarks) with SFace (MobileFaceNet, 128-d, trained with the SFace loss on
ArcFace-aligned faces): different data, losses and crops, so their errors are only
weakly correlated and the fusion beats both on LFW verification (99.57% against 98.97%
and 99.37%) and identifies nearly as well as SFace alone at low false-accept rates
(``docs/preprocessing.md``). The registry also ships ``facenet+dlib`` (the default until
issue 15: FaceNet, Inception-ResNet-v1, 512-d, with dlib), ``facenet+dlib+sface`` and
``facenet+sface``, built the same way; ``docs/preprocessing.md`` compares them all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError, ModelError
from facesense.models.registry import IMPOSTOR_MEDIANS, fusion_model_id

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.embed.base import Embedder
    from facesense.types import Faces

logger = logging.getLogger(__name__)

__all__ = ["FusedEmbedder", "FusionPart"]


class FusedEmbedder:
    """Concatenate several embedders' outputs, each scaled by ``1 / impostor median``.

    Args:
        parts: the embedders to fuse (at least two).
        scales: the impostor median of each part; looked up in the registry
            (:data:`facesense.models.registry.IMPOSTOR_MEDIANS`) by model id when ``None``.
        merge: run the parts as one merged ONNX Runtime graph when they all can
            (same embeddings, much faster); ``False`` calls each part's ``embed``.
        threads: intra-op threads of the merged session (``None``: the runtime default).
        batch_size: faces per merged-session call.

    Raises:
        ConfigError: fewer than two parts, or a part without a known scale.
    """

    def __init__(
        self,
        parts: Sequence[Embedder],
        *,
        scales: Sequence[float] | None = None,
        merge: bool = True,
        threads: int | None = None,
        batch_size: int = 16,
    ) -> None:
        if len(parts) < 2:
            raise ConfigError(f"fusion needs at least two embedders, got {len(parts)}")
        if scales is None:
            missing = [p.model_id for p in parts if p.model_id not in IMPOSTOR_MEDIANS]
            if missing:
                raise ConfigError(
                    f"no impostor scale measured for {', '.join(missing)}; pass scales= "
                    "(the median distance between two different people's embeddings)"
                )
            scales = [IMPOSTOR_MEDIANS[p.model_id] for p in parts]
        if len(scales) != len(parts) or any(not s > 0 for s in scales):
            raise ConfigError(f"expected {len(parts)} positive scales, got {list(scales)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.parts = tuple(parts)
        self.scales = tuple(float(s) for s in scales)
        self.merge = merge
        self.threads = threads
        self.batch_size = batch_size
        self._session: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._merged: bool | None = None  # decided on first use
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        inner = ", ".join(f"{p!r} / {s:g}" for p, s in zip(self.parts, self.scales, strict=True))
        return f"FusedEmbedder({inner})"

    @property
    def dim(self) -> int:
        """Sum of the parts' lengths."""
        return sum(int(p.dim) for p in self.parts)

    @property
    def weights(self) -> tuple[float, ...]:
        """Each part's share of the fused distance scale (``1 / scale``, normalised to sum 1)."""
        inv = [1.0 / s for s in self.scales]
        return tuple(v / sum(inv) for v in inv)

    @property
    def model_id(self) -> str:
        """The parts' ids and weights, e.g. ``"fusion(facenet-.../fixed@0.281+dlib-resnet-v1/mtcnn5@0.719)"``."""
        return fusion_model_id([(p.model_id, s) for p, s in zip(self.parts, self.scales, strict=True)])

    def load(self) -> None:
        """Load the models now instead of on the first face (idempotent).

        Raises:
            ModelError: a model cannot be loaded.
        """
        if self._use_merged():
            return
        for p in self.parts:
            load = getattr(p, "load", None)
            if load is not None:
                load()

    @property
    def merged(self) -> bool | None:
        """Whether the parts run as one merged session (``None`` until the first use)."""
        return self._merged

    def _use_merged(self) -> bool:
        if self._merged is not None:
            return self._merged
        with self._lock:
            if self._merged is None:
                self._merged = self._load_merged()
            return self._merged

    def _load_merged(self) -> bool:
        if not self.merge or not all(hasattr(p, "onnx_path") and hasattr(p, "prepare") for p in self.parts):
            return False
        paths = [p.onnx_path() for p in self.parts]  # type: ignore[attr-defined]
        if any(path is None for path in paths):
            return False
        from facesense.models.runtime import create_session, merged_model_path

        start = time.perf_counter()
        try:
            parts = [(f"part{i}", path) for i, path in enumerate(paths)]
            merged = merged_model_path(parts)
            try:
                self._session = create_session(merged, threads=self.threads, name="fused embedders")
            except ModelError as exc:  # a damaged cached merge: build it again, once
                logger.warning("rebuilding the cached merged model %s: %s", merged, exc)
                merged.unlink(missing_ok=True)
                self._session = create_session(merged_model_path(parts), threads=self.threads, name="fused embedders")
        except ModelError as exc:
            logger.warning("running the fused embedders one by one: %s", exc)
            return False
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]
        if len(self._inputs) != len(self.parts) or len(self._outputs) != len(self.parts):
            raise ModelError(f"the merged model has inputs {self._inputs} and outputs {self._outputs}")
        logger.debug("merged %d embedders into one session in %.2f s", len(paths), time.perf_counter() - start)
        return True

    def _embed_merged(self, image: npt.NDArray[np.uint8], faces: Faces) -> npt.NDArray[np.float32]:
        return self._run_merged([p.prepare(image, faces) for p in self.parts])  # type: ignore[attr-defined]

    def _run_merged(self, blobs: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """The fused embeddings of the parts' input blobs, ``batch_size`` faces per session run."""
        n = len(blobs[0])
        chunks: list[list[npt.NDArray[np.float32]]] = [[] for _ in self.parts]
        for start in range(0, n, self.batch_size):
            feed = {name: b[start : start + self.batch_size] for name, b in zip(self._inputs, blobs, strict=True)}
            try:
                outs = self._session.run(self._outputs, feed)
            except Exception as exc:  # onnxruntime raises its own, unexported classes
                raise ModelError(f"fused embedding failed in ONNX Runtime: {exc}") from exc
            for chunk, out in zip(chunks, outs, strict=True):
                chunk.append(out)
        return self.fuse([p.finish(np.concatenate(c)) for p, c in zip(self.parts, chunks, strict=True)])  # type: ignore[attr-defined]

    def embed_many(self, items: Sequence[tuple[npt.NDArray[np.uint8], Faces]]) -> list[Faces]:
        """:meth:`embed` for the faces of several images at once (several cameras' frames):
        their crops share the merged session's batches, so N small requests cost about
        one larger one. The same embeddings as embedding each image on its own."""
        if not self._use_merged() or sum(len(f) for _, f in items) == 0:
            return [self.embed(image, faces) for image, faces in items]
        full = [(image, faces) for image, faces in items if len(faces)]
        blobs = [np.concatenate([p.prepare(image, faces) for image, faces in full]) for p in self.parts]  # type: ignore[attr-defined]
        fused = self._run_merged(blobs)
        out: list[Faces] = []
        start = 0
        for _, faces in items:
            n = len(faces)
            emb = fused[start : start + n] if n else np.zeros((0, self.dim), np.float32)
            out.append(faces.replace(embeddings=emb))
            start += n
        return out

    def fuse(self, embeddings: Sequence[npt.ArrayLike]) -> npt.NDArray[np.float32]:
        """Combine the parts' ``(N, d_i)`` unit embeddings into ``(N, dim)`` unit vectors."""
        from facesense.embed.base import l2_normalize

        cols = [np.asarray(e, np.float32) / s for e, s in zip(embeddings, self.scales, strict=True)]
        return l2_normalize(np.concatenate(cols, axis=1))

    def part_view(self, model_id: str) -> FusionPart | None:
        """An embedder giving the embeddings of the part with ``model_id``, from this fusion.

        The fused vector holds each part's unit vector scaled by a constant, so the part's
        columns, normalised again, are that part's embedding (to float rounding). The view
        runs this fusion's models (one merged session), so no second copy of the part is
        loaded; it costs the whole fusion per call. ``None`` when no part has that id.
        """
        offset = 0
        for part in self.parts:
            dim = int(part.dim)
            if part.model_id == model_id:
                return FusionPart(self, model_id, offset, dim)
            offset += dim
        return None

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with the fused ``(N, dim)`` embeddings filled in."""
        if len(faces) == 0:
            return faces.replace(embeddings=np.zeros((0, self.dim), np.float32))
        if self._use_merged():
            return faces.replace(embeddings=self._embed_merged(image, faces))
        parts = []
        for p in self.parts:
            emb = p.embed(image, faces).embeddings
            if emb is None:  # pragma: no cover - every embedder fills them in
                raise ConfigError(f"{p!r} returned no embeddings")
            parts.append(emb)
        return faces.replace(embeddings=self.fuse(parts))


class FusionPart:
    """One part's embeddings, cut from a fusion's (:meth:`FusedEmbedder.part_view`).

    Attributes:
        fusion: the fusion that embeds.
        model_id: the part's model id (its embeddings are that model's).
        offset: where the part's columns start in the fused vector.
        dim: the part's length.
    """

    def __init__(self, fusion: FusedEmbedder, model_id: str, offset: int, dim: int) -> None:
        self.fusion = fusion
        self.model_id = model_id
        self.offset = offset
        self.dim = dim

    def __repr__(self) -> str:
        return f"FusionPart({self.model_id!r} of {self.fusion!r})"

    def load(self) -> None:
        """Load the fusion's models now (idempotent)."""
        self.fusion.load()

    def embed(self, image: npt.NDArray[np.uint8], faces: Faces) -> Faces:
        """``faces`` with the part's ``(N, dim)`` unit embeddings filled in."""
        from facesense.embed.base import l2_normalize

        fused = self.fusion.embed(image, faces).embeddings
        if fused is None:  # pragma: no cover - the fusion always fills them in
            raise ModelError("the fusion returned no embeddings")
        return faces.replace(embeddings=l2_normalize(fused[:, self.offset : self.offset + self.dim]))


def __getattr__(name: str) -> Any:
    # ``facesense.embed.fusion.make_embedder`` / ``EmbedderKind`` moved to
    # facesense.embed.factory; still importable from here. Resolved lazily so that this
    # module never imports the factory (which imports it).
    if name in ("EmbedderKind", "make_embedder"):
        from facesense.embed import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
