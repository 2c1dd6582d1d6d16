"""Building detectors: :func:`make_detector` and the one table of defaults, :data:`DEFAULTS`.

Every detector the library, the CLI, the web server and the bench use is built here, so
a default can never differ between them. The detector is :data:`DEFAULT_DETECTOR`
(YuNet, its landmarks re-placed by MTCNN's O-Net, :data:`LANDMARK_PASSES`;
``make_detector("mtcnn")`` and ``--detector mtcnn`` give MTCNN). It is wrapped
in the non-face check (:class:`~facesense.detect.verify.VerifiedDetector`,
``DEFAULTS[use].verify``), so animal faces are not reported, tracked, enrolled or
named; in video each verdict is remembered while the face stays put. The other defaults depend on what the detector is for, not on who builds it:

* ``image`` (photos: ``facesense detect``, ``eval``, enrollment from files,
  :class:`~facesense.analyzer.FaceAnalyzer`): look for faces from 20 px, the smallest
  the networks find reliably (WIDER FACE subset, ``facesense eval detect``).
* ``video`` (streams: ``watch``, ``serve``, camera enrollment, ``bench``): from 40 px.
  YuNet shrinks the frame so that a 40 px face reaches its network at 24 px (0.6 of a
  640x360 frame; :data:`facesense.detect.yunet.DEFAULT_NETWORK_FACE_PX`), and MTCNN's
  pyramid starts at ``12 / min_face_px``, a quarter of the pixels it has at 20 px; and
  faces under 40 px are mostly
  upsampling blur to the embedders (FaceNet sees 160 px crops; enrollment refuses them,
  :data:`facesense.enroll.DEFAULT_MIN_FACE_PX`).

Tilted faces: ``make_detector(..., rotations=True)`` wraps the detector in a
:class:`~facesense.detect.rotate.RotatingDetector` that also searches copies turned by
90, -90 and 180 degrees (LFW, 200 images: recall at +-60 from 0.70-0.81 to 0.99-1.00,
at +-90 from 0.21-0.43 to 1.00, upright unchanged). Detections from the copies must
score at least :data:`ROTATED_MIN_SCORE` of their detector, or (photos, YuNet:
:data:`ROTATED_CONFIRM`) pass the non-face check's strict confirmation, which holds the
extra false faces down; in video the copies are searched on every
``rotation_every_n``-th detection (``DEFAULTS``), which keeps the cost near 1.5-1.7x the
detector alone. Off by default.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from facesense.choices import did_you_mean, parse_choice
from facesense.errors import ConfigError

if TYPE_CHECKING:
    from facesense.detect.base import Detector

__all__ = ["DEFAULTS", "DEFAULT_DETECTOR", "LANDMARK_PASSES", "ROTATED_CONFIRM", "ROTATED_MIN_SCORE", "DetectorDefaults", "DetectorKind", "DetectorUse", "make_detector"]


class DetectorKind(str, enum.Enum):
    """The detectors facesense ships (keys of :data:`facesense.models.registry.DETECTORS`)."""

    MTCNN = "mtcnn"
    YUNET = "yunet"


DEFAULT_DETECTOR = DetectorKind.YUNET
"""The detector every command, the web server and the library use unless told otherwise.

YuNet (issue 14), with the non-face check and its landmarks re-placed by MTCNN's O-Net
(:data:`LANDMARK_PASSES`). Against MTCNN, same runs (``benchmarks/detectors.py``,
``scripts/yunet_onet_landmarks.py``): WIDER FACE AP 0.829 against 0.718 for faces
>= 20 px, 0 false faces on the 67 animal photos against 2, LFW with dlib + SFace 99.60%
against 99.57%, and several times faster. The embedders' calibrations were measured on
MTCNN's points; O-Net's points on YuNet's faces lie within 0.023 eye distances of them,
and a gallery embedded from MTCNN's faces names YuNet's as well as its own (LFW 99.57%,
95.1% named right at 1% stranger FAR), so model ids and galleries carry over.
``make_detector("mtcnn")`` / ``--detector mtcnn`` give MTCNN, the detector facesense
grew from.
"""


class DetectorUse(str, enum.Enum):
    """What a detector is for; picks its row of :data:`DEFAULTS`."""

    IMAGE = "image"
    VIDEO = "video"


@dataclass(frozen=True, kw_only=True)
class DetectorDefaults:
    """The settings a detector gets unless told otherwise.

    Attributes:
        min_face_px: smallest face side to look for, in image pixels.
        rotation_every_n: with ``rotations``, search the rotated copies on every
            ``rotation_every_n``-th detection (photos: each; video: every 5th, the
            tracker holds a tilted face in between).
        verify: run the non-face check (:class:`~facesense.detect.verify.VerifiedDetector`)
            on every face, so animal faces are not reported, tracked, enrolled or named.
        verify_memory_calls: with ``verify``, a face found where one was checked on the
            last ``verify_memory_calls`` detections keeps that verdict (video: the check
            runs about once per face a second at 30 fps; photos: every face, every time).
        landmarks_at_embed: with an O-Net landmark stage (:data:`LANDMARK_PASSES`),
            re-place the points only of the faces that get embedded, not of every
            detection (video: a stream embeds a few faces a second;
            :class:`~facesense.detect.landmarks.OnetLandmarkDetector` ``at_embed``). The
            pipeline, the analyzer and the web server's sources then wrap their embedder
            (:func:`~facesense.detect.landmarks.with_landmark_stage`).
        rotation_angles: the copies ``rotations=True`` searches (degrees). Photos add
            +-45 to the quarter turns: MTCNN misses some faces turned about 45 degrees
            in every quarter-turn copy (turned LFW: recall 0.98 at +-45), and a photo is
            detected once; video keeps the quarter turns, which cost no resampling.
        rotation_confirm: with ``rotations``, keep a face found only in turned copies
            under :data:`ROTATED_MIN_SCORE` when the non-face check confirms it
            (:class:`~facesense.detect.rotate.RotatingDetector` ``confirm``). Photos:
            turned WIDER FACE recall at +-60 0.887 / 0.887 -> 0.916 / 0.926, for 25
            more false detections on the 153 upright images (precision 0.930 -> 0.885,
            AP 0.833 -> 0.832; ``scripts/wider_rotation_limits.py confirm``). Video:
            off; on the Hamilton clip it added 7 faces in 275 frames, all false (hands,
            the back of a head, part of a face), and a tracker holds a tilted face
            found on one search.
    """

    min_face_px: float
    rotation_every_n: int = 1
    rotation_angles: tuple[float, ...] = (0.0, 90.0, -90.0, 180.0)
    rotation_confirm: bool = True
    verify: bool = True
    verify_memory_calls: int = 0
    landmarks_at_embed: bool = False


DEFAULTS: Mapping[DetectorUse, DetectorDefaults] = MappingProxyType(
    {
        DetectorUse.IMAGE: DetectorDefaults(min_face_px=20.0, rotation_angles=(0.0, 90.0, -90.0, 180.0, 45.0, -45.0)),
        # Video: the check too, each verdict remembered while the face's box stays put
        # (30 detections), so it runs about once per face a second: on the Hamilton clip
        # 25 O-Net checks over 275 frames, median detection time unchanged.
        DetectorUse.VIDEO: DetectorDefaults(
            min_face_px=40.0,
            rotation_every_n=5,
            rotation_confirm=False,
            verify_memory_calls=30,
            landmarks_at_embed=True,
        ),
    }
)
"""Detector defaults by use (see the module docstring); ``DEFAULTS["video"]`` works too."""

LANDMARK_PASSES: Mapping[DetectorKind, int] = MappingProxyType({DetectorKind.MTCNN: 0, DetectorKind.YUNET: 2})
"""How many times MTCNN's O-Net re-places each face's five landmarks, per detector
(:class:`~facesense.detect.landmarks.OnetLandmarkDetector`; 0: the detector's own points).
The embedders' templates and calibrations were fitted on MTCNN's points; with YuNet's
own, dlib + SFace loses 0.3 points of LFW (99.30% against 99.57%), with O-Net's it
matches MTCNN (99.60%; :mod:`facesense.detect.landmarks`)."""

ROTATED_MIN_SCORE: Mapping[DetectorKind, float] = MappingProxyType({DetectorKind.MTCNN: 0.95, DetectorKind.YUNET: 0.8})
"""The score a face found only in a rotated copy needs, per detector, unless the non-face
check confirms it (:class:`~facesense.detect.rotate.RotatingDetector` ``confirm``): each
copy is another chance for a false face near the threshold (animals, 67 photos, before the
check: MTCNN 6 false faces alone, 13 with the copies at its own threshold, 8 at 0.95;
YuNet 21, 29, 22 at 0.8; with the check and the confirmation, YuNet 1 with the copies)."""


ROTATED_CONFIRM: Mapping[DetectorKind, bool] = MappingProxyType({DetectorKind.MTCNN: False, DetectorKind.YUNET: True})
"""Whether a face found only in rotated copies under :data:`ROTATED_MIN_SCORE` may be kept
when the non-face check confirms it (:class:`~facesense.detect.rotate.RotatingDetector`
``confirm``; and only where ``DEFAULTS[use].rotation_confirm``), per detector. YuNet: yes
(faces 0.7-0.8; animals stay at 1 false face). MTCNN: no; its band under the bar is
0.8-0.95, and confirming it took the 67 animal photos from 9 false faces to 15 and the
negatives from 0 to 2 (with ``rotations=True``, 2026-12-07)."""


def make_detector(
    kind: DetectorKind | str | None = None,
    *,
    use: DetectorUse | str = DetectorUse.IMAGE,
    min_face_px: float | None = None,
    threads: int | None = None,
    rotations: bool | Sequence[float] = False,
    verify: bool | None = None,
    landmark_passes: int | None = None,
    **options: Any,
) -> Detector:
    """Build a detector with facesense's defaults for ``use``.

    Models load on the first :meth:`~facesense.detect.base.Detector.detect` call, not here.

    Args:
        kind: which detector (``"yunet"`` or ``"mtcnn"``); ``None`` takes
            :data:`DEFAULT_DETECTOR`.
        use: ``"image"`` (photos) or ``"video"`` (streams); picks the row of
            :data:`DEFAULTS` for every setting not given.
        min_face_px: smallest face to look for, in pixels; ``None`` takes the default
            for ``use``.
        threads: inference threads; ``None`` uses ``$FACESENSE_THREADS`` or every core.
        rotations: also search rotated copies for tilted faces: ``True`` for the
            measured default angles (``DEFAULTS[use].rotation_angles``: quarter turns, and +-45 for photos), or the angles in degrees.
        verify: drop non-human faces (animals) with the two-step check of
            :class:`~facesense.detect.verify.VerifiedDetector`; ``None`` takes
            ``DEFAULTS[use].verify`` (on for photos and video; in video each verdict is
            remembered while the face stays put, ``verify_memory_calls``). Animals, 67 photos,
            out-of-fold: YuNet 21 -> 0 false faces, MTCNN 6 -> 2, WIDER recall unchanged
            (``benchmarks/nonface_check.py``).
        landmark_passes: re-place each face's landmarks with MTCNN's O-Net this many
            times (0: the detector's own points); ``None`` takes
            :data:`LANDMARK_PASSES` for ``kind`` (YuNet 2, MTCNN 0). The check, when on,
            sees the detector's own points (it was fitted on them).
        options: further settings of the detector's config (for MTCNN the fields of
            :class:`~facesense.detect.mtcnn.MTCNNConfig`: ``thresholds``, ``scale_factor``;
            for YuNet those of :class:`~facesense.detect.yunet.YuNetConfig`:
            ``score_threshold``, ``iou_threshold``, ``max_side_px``).

    Returns:
        The detector (an :class:`~facesense.detect.mtcnn.MTCNNDetector` for ``"mtcnn"``,
        a :class:`~facesense.detect.yunet.YuNetDetector` for ``"yunet"``).

    Raises:
        ConfigError: unknown kind, use or option (with a did-you-mean), or a bad value.
    """
    kind = parse_choice(DetectorKind, DEFAULT_DETECTOR if kind is None else kind, "detector")
    use = parse_choice(DetectorUse, use, "detector use")
    defaults = DEFAULTS[use]
    config_type: Any
    detector_type: Any
    if kind is DetectorKind.YUNET:
        from facesense.detect.yunet import YuNetConfig, YuNetDetector

        config_type, detector_type = YuNetConfig, YuNetDetector
    else:
        from facesense.detect.mtcnn import MTCNNConfig, MTCNNDetector

        config_type, detector_type = MTCNNConfig, MTCNNDetector

    known = [f.name for f in fields(config_type) if f.name not in ("min_face_px", "threads")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"unknown {kind.value} option {name!r}{did_you_mean(name, known)}; "
            f"choose from min_face_px, threads, {', '.join(known)}"
        )
    config = config_type(
        min_face_px=defaults.min_face_px if min_face_px is None else min_face_px,
        threads=threads,
        **options,
    )
    passes = LANDMARK_PASSES[kind] if landmark_passes is None else landmark_passes
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise ConfigError(f"landmark_passes must be an integer >= 0, got {passes!r}")
    detector: Detector = detector_type(config)
    if defaults.verify if verify is None else verify:
        from facesense.detect.verify import VerifiedDetector

        detector = VerifiedDetector(detector, threads=threads, memory_calls=defaults.verify_memory_calls)
    if passes:
        from facesense.detect.landmarks import OnetLandmarkDetector

        detector = OnetLandmarkDetector(detector, passes=passes, threads=threads, at_embed=defaults.landmarks_at_embed)
    if rotations is False:
        return detector
    from facesense.detect.rotate import RotatingDetector

    angles = defaults.rotation_angles if rotations is True else tuple(rotations)
    return RotatingDetector(
        detector,
        angles=angles,
        every_n=defaults.rotation_every_n,
        rotated_min_score=ROTATED_MIN_SCORE[kind],
        confirm=defaults.rotation_confirm and ROTATED_CONFIRM[kind],
    )
