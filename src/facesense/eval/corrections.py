"""Corrections on LFW: does telling facesense "not X" make it name fewer strangers?

Protocol (``facesense eval corrections --images LFW_DIR``), on top of the open-set
protocol of :mod:`facesense.eval.identify` (one image enrolled per person, their other
images are probes, people with one image are strangers) and its cross-validation by
person (``folds``; the impostor table of the score normalisation is measured on the
training folds' images only):

1. For each fold, the **user's stream** is every probe and stranger of the *other*
   folds' people, in a seeded random order, recognised at the operating threshold
   (the model's calibrated default).
2. The simulated user corrects the **first k false accepts** of that stream: a stranger
   named X gets "not X" (a negative of X); a probe of Y named X gets "this is Y" (a
   sample of Y and a negative of X). The matcher is refitted after each correction,
   as a :class:`facesense.recognize.LiveMatcher` would be, so k corrections are k
   different mistakes.
3. Everything is then measured on the **held-out fold** (probes and strangers never in
   any stream): the share of probes named right (``dir``) and of strangers named at all
   (``far``), at the operating threshold and at the thresholds chosen, as in ``eval
   identify``, for FAR <= 1 % and <= 2 % on the stream's strangers before any correction
   (the gallery's global threshold; corrections act per person on top of it).

Reported per k and per rule (veto only; veto and per-person thresholds), and the
stranger FAR at the same ``dir`` as k = 0 at the operating threshold (read off the pooled
held-out curve).

LFW's strangers have one image each, so a stranger the user corrected never comes back,
which is the case "not X" is for. ``returning=N`` (``--returning N``) adds strangers who
do: N people with 4 or more images are taken out of the gallery; the first half of their
images (at most 8 in all, in file order) arrive in every fold's stream and the rest are
held out with the strangers of their fold, and reported on their own as well
(``returning_far``).

**Reach.** Each run also counts, among the held-out strangers' false accepts without
corrections (k = 0, at the operating threshold), those taken for a person this run's user
corrected, and those of a returning stranger the user corrected (``reachable``,
``reachable_returning``). The veto of X and X's per-person threshold act on faces taken
for X only, so these bound what they can stop. On LFW with the default embedder the first
is 0 of 20 at k = 50 and the second 0-1 of 5-9 (``docs/recognition.md``): a false accept
there is one photo's, and the same mistake never comes back to be corrected.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facesense.errors import ConfigError

if TYPE_CHECKING:
    import numpy.typing as npt

    from facesense.enroll import FaceAnalyzerLike
    from facesense.eval.identify import OpenSetProtocol
    from facesense.match import KNNMatcher, ScoreNorm

logger = logging.getLogger(__name__)

__all__ = ["CORRECTION_COUNTS", "CorrectionRun", "CorrectionsReport", "evaluate_corrections", "evaluate_open_set_corrections"]

CORRECTION_COUNTS = (0, 10, 50)
RETURNING_MAX_IMAGES = 8
FAR_TARGETS = (0.01, 0.02)


@dataclass(frozen=True)
class CorrectionRun:
    """One k and one rule, over all folds.

    Attributes:
        k: corrections asked for per fold.
        per_person: whether per-person thresholds were on (the veto always is).
        corrections: corrections made, summed over folds (fewer than ``k`` per fold
            when the stream ran out of false accepts).
        not_x: of those, "not X" on a stranger; the rest are "this is Y".
        default_dir, default_far: held-out named-right and stranger FAR at the operating threshold.
        cross_validated: per FAR target, held-out ``dir`` and ``far`` at the global threshold
            chosen on the stream's strangers before corrections.
        far_at_same_dir: held-out stranger FAR at the threshold that names as many
            probes right as k = 0 does at the operating threshold.
        scores: pooled held-out ``(correct, probe_scores, stranger_scores)``.
        reachable: ``(n, of)``: of the ``of`` held-out stranger false accepts without
            corrections (k = 0, at the operating threshold), ``n`` were named somebody this
            run's user corrected ("not X" or "this is Y" on X) in the same fold. Veto and
            per-person thresholds act on corrected people only, so at the same threshold
            they can stop at most these ``n``.
        reachable_returning: ``(n, of)``: of the ``of`` returning strangers' held-out false
            accepts at k = 0, ``n`` were of a stranger whose earlier face this run's user
            corrected.
    """

    k: int
    per_person: bool
    corrections: int
    not_x: int
    default_dir: float
    default_far: float
    cross_validated: dict[str, dict[str, float]]
    far_at_same_dir: float | None
    scores: tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]
    returning_far: float | None = None
    returning_far_at_same_dir: float | None = None
    reachable: tuple[int, int] = (0, 0)
    reachable_returning: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "k": self.k,
            "per_person": self.per_person,
            "corrections": self.corrections,
            "not_x": self.not_x,
            "default": {"dir": round(self.default_dir, 4), "far": round(self.default_far, 4)},
            "cross_validated": self.cross_validated,
            "far_at_same_dir": _rounded(self.far_at_same_dir),
            "reachable": {"false_accepts": self.reachable[1], "of_corrected_people": self.reachable[0]},
        }
        if self.returning_far is not None:
            out["returning"] = {
                "far": _rounded(self.returning_far),
                "far_at_same_dir": _rounded(self.returning_far_at_same_dir),
                "false_accepts": self.reachable_returning[1],
                "of_corrected_strangers": self.reachable_returning[0],
            }
        return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class CorrectionsReport:
    """The result of :func:`evaluate_open_set_corrections`."""

    model_id: str
    operating_threshold: float
    enrolled: int
    probes: int
    strangers: int
    folds: int
    seed: int
    runs: tuple[CorrectionRun, ...]
    no_face: int = 0
    returning: int = 0
    returning_images: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form."""
        return {
            "model_id": self.model_id,
            "operating_threshold": self.operating_threshold,
            "enrolled": self.enrolled,
            "probes": self.probes,
            "strangers": self.strangers,
            "no_face": self.no_face,
            "returning": {"people": self.returning, "seen": self.returning_images[0], "held_out": self.returning_images[1]},
            "folds": self.folds,
            "seed": self.seed,
            "runs": [r.to_dict() for r in self.runs],
        }

    def run(self, k: int, per_person: bool = True) -> CorrectionRun:
        """The run of ``k`` corrections with or without per-person thresholds.

        Raises:
            ConfigError: no such run.
        """
        for r in self.runs:
            if r.k == k and r.per_person == per_person:
                return r
        raise ConfigError(f"no run with k={k}, per_person={per_person}")

    def lines(self) -> list[str]:
        """A human-readable report."""
        out = [
            (f"corrections: {self.enrolled} people enrolled from one image each, {self.probes} probes, "
             f"{self.strangers} strangers; {self.folds} folds by person (seed {self.seed})"),
            f"model {self.model_id}, operating threshold {self.operating_threshold:g}",
        ]
        if self.returning:
            seen, held = self.returning_images
            out.append(
                f"returning strangers: {self.returning} people held out of the gallery, {seen} of their images in "
                f"the user's stream, {held} later ones held out (counted among the strangers)"
            )
        out.append(
            "     k  rule                 made (not X)   at threshold: named right / FAR    "
            "CV FAR<=1%: named right / FAR   CV FAR<=2%   FAR at k=0's named right"
            + ("   returning: FAR / at k=0's named right" if self.returning else "")
        )
        for r in self.runs:
            rule = "veto + per-person" if r.per_person else "veto only"
            cv1, cv2 = r.cross_validated["0.01"], r.cross_validated["0.02"]
            same = "-" if r.far_at_same_dir is None else f"{100 * r.far_at_same_dir:.2f}%"
            out.append(
                f"  {r.k:4d}  {rule:<19} {r.corrections:5d} ({r.not_x:3d})    "
                f"{100 * r.default_dir:6.2f}% / {100 * r.default_far:5.2f}%            "
                f"{100 * cv1['dir']:6.2f}% / {100 * cv1['far']:5.2f}%           "
                f"{100 * cv2['dir']:6.2f}% / {100 * cv2['far']:5.2f}%   {same:>8}"
                + (f"   {_pct(r.returning_far):>8} / {_pct(r.returning_far_at_same_dir)}" if self.returning else "")
            )
        last = max(self.runs, key=lambda r: (r.k, r.per_person))
        if last.k > 0:
            n, of = last.reachable
            out.append(
                f"  reach: of the {of} held-out stranger false accepts at k=0, {n} were named somebody the user "
                f"corrected at k={last.k}; the veto and per-person thresholds act on corrected people only"
            )
            if self.returning:
                n, of = last.reachable_returning
                out.append(f"  reach, returning: {of} of those false accepts were returning strangers' faces, {n} of a stranger the user corrected")
        return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


@dataclass(frozen=True)
class _Split:
    """The protocol's embeddings by part, with returning strangers taken out of the gallery."""

    g: npt.NDArray[np.float32]
    gl: list[str]
    p: npt.NDArray[np.float32]
    pl: list[str]
    s: npt.NDArray[np.float32]
    sl: list[str]
    r_seen: npt.NDArray[np.float32]  # returning strangers' earlier images, seen by the user
    r_seen_l: list[str]
    r_later: npt.NDArray[np.float32]  # their later images, held out
    r_later_l: list[str]


def _split(protocol: OpenSetProtocol, x: npt.NDArray[np.float32], returning: int, max_images: int, seed: int) -> _Split:
    """Split embeddings laid out as ``protocol.all_paths``; ``returning`` people with at least
    4 images become strangers who come back: their first half (of at most ``max_images``,
    in file order) is seen, the rest held out."""
    ng, npr = len(protocol.gallery), len(protocol.probes)
    g, p, s = x[:ng], x[ng : ng + npr], x[ng + npr :]
    gl, pl, sl = list(protocol.gallery_labels), list(protocol.probe_labels), list(protocol.stranger_labels)
    empty = np.zeros((0, x.shape[1]), np.float32)
    if returning <= 0:
        return _Split(g, gl, p, pl, s, sl, empty, [], empty, [])
    probes_of: dict[str, list[int]] = {}
    for i, name in enumerate(pl):
        probes_of.setdefault(name, []).append(i)
    candidates = sorted(n for n in gl if len(probes_of.get(n, [])) >= 3)
    if returning > len(candidates):
        raise ConfigError(f"returning: only {len(candidates)} people have 4 or more images, asked for {returning}")
    chosen = set(np.random.default_rng(seed + 7).choice(candidates, size=returning, replace=False).tolist())
    seen, seen_l, later, later_l = [], [], [], []
    for gi, name in enumerate(gl):
        if name not in chosen:
            continue
        images = [g[gi], *(p[i] for i in probes_of[name])][:max_images]
        half = (len(images) + 1) // 2
        seen += images[:half]
        later += images[half:]
        seen_l += [name] * half
        later_l += [name] * (len(images) - half)
    keep_g = np.array([n not in chosen for n in gl])
    keep_p = np.array([n not in chosen for n in pl])
    return _Split(
        g[keep_g], [n for n in gl if n not in chosen], p[keep_p], [n for n in pl if n not in chosen], s, sl,
        np.asarray(seen, np.float32).reshape(-1, x.shape[1]), seen_l,
        np.asarray(later, np.float32).reshape(-1, x.shape[1]), later_l,
    )


def _fitted(
    norm: ScoreNorm,
    threshold: float | None,
    pos_x: list[npt.NDArray[np.float32]],
    pos_l: list[str],
    neg_x: list[npt.NDArray[np.float32]],
    neg_l: list[str],
    per_person: bool,
) -> KNNMatcher:
    """The KNN matcher of the gallery plus the user's corrections so far."""
    from facesense.match import KNNMatcher

    negatives = np.concatenate(neg_x) if neg_x else None
    return KNNMatcher(threshold=threshold, norm=norm).fit(
        np.concatenate(pos_x), pos_l, negatives=negatives, negative_labels=neg_l if neg_x else None, per_person=per_person
    )


def _first_false_accept(
    names: Sequence[str | None], truth: Sequence[str | None]
) -> int | None:
    for i, (n, t) in enumerate(zip(names, truth, strict=True)):
        if n is not None and n != t:
            return i
    return None


def _far_at_dir(correct: npt.NDArray[np.bool_], probe: npt.NDArray[np.float64], stranger: npt.NDArray[np.float64], target: float) -> float | None:
    """Stranger FAR at the smallest threshold whose named-right share reaches ``target``."""
    hits = np.sort(probe[correct])
    need = int(np.ceil(target * len(probe) - 1e-9))
    if need == 0:
        return 0.0
    if need > len(hits):
        return None
    t = hits[need - 1]
    return float(np.mean(stranger <= t))


def evaluate_open_set_corrections(
    protocol: OpenSetProtocol,
    embeddings: npt.NDArray[np.float32],
    *,
    model_id: str,
    ks: Sequence[int] = CORRECTION_COUNTS,
    folds: int = 5,
    seed: int = 0,
    operating_threshold: float | None = None,
    no_face: int = 0,
    returning: int = 0,
    returning_max_images: int = RETURNING_MAX_IMAGES,
) -> CorrectionsReport:
    """Run the corrections protocol on embeddings laid out as ``protocol.all_paths``.

    Args:
        model_id: the embeddings' model (its calibration gives the score normalisation
            and the default operating threshold).
        ks: how many corrections the user makes per fold.
        folds: cross-validation folds by person.
        seed: the folds' and the stream's seed.
        operating_threshold: the threshold the user's stream is recognised at (default:
            the model's calibrated one).
        returning: take this many people with 4 or more images out of the gallery as
            **returning strangers**, the case "not X" is for: the first half of their
            images (at most ``returning_max_images`` in all, in file order) arrive in
            every fold's stream, the rest are held out with their fold's strangers.
            0: LFW's one-off strangers only.
        returning_max_images: at most this many images of one returning stranger.

    Raises:
        ConfigError: an uncalibrated model, bad ``ks``, ``folds`` or ``returning``.
    """
    from facesense.eval.identify import OpenSetScores, _folds_by_person, impostor_quantiles
    from facesense.match import KNNMatcher
    from facesense.models.registry import calibration

    if folds < 2:
        raise ConfigError(f"folds must be >= 2, got {folds}")
    if not ks or any(int(k) < 0 for k in ks):
        raise ConfigError(f"correction counts must be >= 0, got {list(ks)}")
    if returning < 0 or returning_max_images < 2:
        raise ConfigError(f"returning must be >= 0 and returning_max_images >= 2, got {returning}, {returning_max_images}")
    cal = calibration(model_id)
    t_op = cal.threshold if operating_threshold is None else float(operating_threshold)
    x = np.asarray(embeddings, np.float32)
    if x.ndim != 2 or x.shape[0] != len(protocol.all_paths):
        raise ConfigError(f"expected {len(protocol.all_paths)} embeddings in the protocol's order, got shape {x.shape}")
    sp = _split(protocol, x, returning, returning_max_images, seed)
    g, gl, p, pl = sp.g, sp.gl, sp.p, sp.pl
    # Strangers held out by fold: the one-off ones, then the returning ones' later images.
    s = np.concatenate([sp.s, sp.r_later])
    sl = sp.sl + sp.r_later_l
    is_returning = np.arange(len(sl)) >= len(sp.sl)
    npr = len(pl)
    fold_of = _folds_by_person(gl + sp.sl + sorted(set(sp.r_later_l)), folds, seed)
    pf = np.array([fold_of[n] for n in pl])
    sf = np.array([fold_of[n] for n in sl])
    labels_all = np.array(gl + pl + sl)
    fold_all = np.array([fold_of[n] for n in labels_all])
    x_all = np.concatenate([g, p, s])
    rules = [(int(k), pp) for k in ks for pp in ((False, True) if int(k) > 0 else (True,))]
    acc: dict[tuple[int, bool], dict[str, Any]] = {
        r: {"made": 0, "not_x": 0, "correct": [], "probe": [], "stranger": [], "returning": [],
            "hits": dict.fromkeys(FAR_TARGETS, 0), "accepts": dict.fromkeys(FAR_TARGETS, 0),
            "reach": [0, 0], "reach_returning": [0, 0]}
        for r in rules
    }
    for fold in range(folds):
        train = fold_all != fold
        norm = replace(cal.norm, impostor_quantiles=impostor_quantiles(x_all[train], labels_all[train]))
        # The user's stream: the other folds' probes (truth: their person) and strangers (truth:
        # nobody), and every returning stranger's earlier images (truth: nobody).
        one_off_stream = (sf != fold) & ~is_returning
        stream_x = np.concatenate([p[pf != fold], s[one_off_stream], sp.r_seen])
        # whose face each stream face is (strangers too, for the reach counts)
        stream_probes = [n for n, f in zip(pl, pf.tolist(), strict=True) if f != fold]
        n_probe_stream = len(stream_probes)
        stream_who = [*stream_probes, *(n for n, o in zip(sl, one_off_stream.tolist(), strict=True) if o), *sp.r_seen_l]
        stream_truth: list[str | None] = [*stream_probes, *[None] * (len(stream_who) - n_probe_stream)]
        order = np.random.default_rng(seed + 1000 * (fold + 1)).permutation(len(stream_truth))
        stream_x = stream_x[order]
        stream_truth = [stream_truth[i] for i in order]
        stream_who = [stream_who[i] for i in order]
        is_stranger = order >= n_probe_stream
        test_p, test_pl = p[pf == fold], [n for n, f in zip(pl, pf.tolist(), strict=True) if f == fold]
        test_s, test_returning = s[sf == fold], is_returning[sf == fold]
        test_who = [n for n, f in zip(sl, sf.tolist(), strict=True) if f == fold]
        # The global thresholds for the FAR targets: chosen, as in `eval identify`, on the
        # stream's strangers before any correction; corrections then act per person only.
        base = KNNMatcher(threshold=None, norm=norm).fit(g, gl)
        calib = OpenSetScores(np.zeros(0, bool), np.zeros(0), base.match(stream_x[is_stranger]).scores.astype(np.float64))
        fold_t = {far: calib.threshold_for_far(far) for far in FAR_TARGETS}
        # the held-out strangers' false accepts without corrections (k = 0 is this matcher)
        held = base.match(test_s)
        base_fa = [(c, w, bool(r)) for c, w, r, sc in zip(held.candidates, test_who, test_returning.tolist(), held.scores.tolist(), strict=True) if sc <= t_op]
        for k, per_person in rules:
            pos_x, pos_l = [g], list(gl)
            neg_x: list[npt.NDArray[np.float32]] = []
            neg_l: list[str] = []
            start, made, not_x = 0, 0, 0
            corrected_strangers: set[str] = set()

            while made < k and start < len(stream_truth):
                names = _fitted(norm, t_op, pos_x, pos_l, neg_x, neg_l, per_person).match(stream_x[start:]).names
                j = _first_false_accept(names, stream_truth[start:])
                if j is None:
                    break
                i = start + j
                wrong = names[j]
                if wrong is None:  # pragma: no cover - _first_false_accept returns named faces only
                    break
                neg_x.append(stream_x[i][None])
                neg_l.append(wrong)
                truth = stream_truth[i]
                if truth is None:
                    not_x += 1
                    corrected_strangers.add(stream_who[i])
                else:
                    pos_x.append(stream_x[i][None])
                    pos_l.append(truth)
                made += 1
                start = i + 1
            final = _fitted(norm, None, pos_x, pos_l, neg_x, neg_l, per_person)
            rp, rs = final.match(test_p), final.match(test_s)
            correct = np.array([c == t for c, t in zip(rp.candidates, test_pl, strict=True)], bool)
            ps, ss = rp.scores.astype(np.float64), rs.scores.astype(np.float64)
            a = acc[(k, per_person)]
            a["made"] += made
            a["not_x"] += not_x
            a["correct"].append(correct)
            a["probe"].append(ps)
            a["stranger"].append(ss)
            a["returning"].append(test_returning)
            corrected_people = set(neg_l)
            a["reach"][0] += sum(c in corrected_people for c, _, _ in base_fa)
            a["reach"][1] += len(base_fa)
            a["reach_returning"][0] += sum(w in corrected_strangers for _, w, r in base_fa if r)
            a["reach_returning"][1] += sum(r for _, _, r in base_fa)
            for far in FAR_TARGETS:
                t = fold_t[far]
                a["hits"][far] += int(np.sum(correct & (ps <= t)))
                a["accepts"][far] += int(np.sum(ss <= t))
            logger.info("fold %d, k=%d%s: %d correction(s)", fold, k, " per-person" if per_person else "", made)
    runs: list[CorrectionRun] = []
    base_dir: float | None = None
    for k, per_person in rules:
        a = acc[(k, per_person)]
        correct = np.concatenate(a["correct"])
        ps = np.concatenate(a["probe"])
        ss = np.concatenate(a["stranger"])
        back = np.concatenate(a["returning"])
        d_dir = float(np.mean(correct & (ps <= t_op)))
        d_far = float(np.mean(ss <= t_op))
        if k == 0:
            base_dir = d_dir
        cv = {
            f"{far:g}": {"dir": round(a["hits"][far] / max(npr, 1), 4), "far": round(a["accepts"][far] / max(len(sl), 1), 4)}
            for far in FAR_TARGETS
        }
        same = _far_at_dir(correct, ps, ss, base_dir) if base_dir is not None else None
        back_far = back_same = None
        if back.any():
            back_far = float(np.mean(ss[back] <= t_op))
            back_same = _far_at_dir(correct, ps, ss[back], base_dir) if base_dir is not None else None
        runs.append(
            CorrectionRun(
                k, per_person, a["made"], a["not_x"], d_dir, d_far, cv, same, (correct, ps, ss), back_far, back_same,
                reachable=(a["reach"][0], a["reach"][1]),
                reachable_returning=(a["reach_returning"][0], a["reach_returning"][1]),
            )
        )
    return CorrectionsReport(
        model_id=model_id,
        operating_threshold=t_op,
        enrolled=len(gl),
        probes=npr,
        strangers=len(sl),
        folds=folds,
        seed=seed,
        runs=tuple(runs),
        no_face=no_face,
        returning=returning,
        returning_images=(len(sp.r_seen), len(sp.r_later)),
    )


def evaluate_corrections(
    analyzer: FaceAnalyzerLike,
    images: str | os.PathLike[str],
    *,
    ks: Sequence[int] = CORRECTION_COUNTS,
    cache: Path | None = None,
    folds: int = 5,
    seed: int = 0,
    operating_threshold: float | None = None,
    returning: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> CorrectionsReport:
    """Run the whole protocol on an LFW folder; the embeddings (and ``cache``) are ``eval identify``'s."""
    from facesense.eval.identify import embed_central_faces, lfw_open_set
    from facesense.models.registry import calibration

    calibration(analyzer.model_id)  # an uncalibrated model is refused before the long embedding
    protocol = lfw_open_set(images)
    embeddings, no_face = embed_central_faces(analyzer, protocol.root, protocol.all_paths, cache=cache, on_progress=on_progress)
    return evaluate_open_set_corrections(
        protocol,
        embeddings,
        model_id=analyzer.model_id,
        ks=ks,
        folds=folds,
        seed=seed,
        operating_threshold=operating_threshold,
        no_face=no_face,
        returning=returning,
    )
