"""How much a sample loses when ``reembed --from-thumbnails`` embeds it from its 96 px thumbnail.

For the first ``--people`` LFW people with at least two images: the first image is the
enrolled sample, embedded once from the photo and once from its thumbnail (what
``facesense.enroll.thumbnail_jpeg`` stores, the face found again in it, as ``reembed``
does); the others are probes, embedded from their photos. Prints the cosine between the
two embeddings of each sample, and rank-1 and named-right at the embedder's calibrated
threshold with either gallery, per embedder, and the CPU line.

    python scripts/thumbnail_reembed.py [--people 150] [--embedder dlib+sface --embedder facenet+dlib]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from facesense.analyzer import FaceAnalyzer
from facesense.cpu import cpu_info
from facesense.embed import make_embedder
from facesense.enroll import face_from_thumbnail, thumbnail_jpeg
from facesense.imageio import load_image
from facesense.match import make_matcher


def central(faces, shape):  # type: ignore[no-untyped-def]
    h, w = shape[:2]
    centres = (faces.xyxy[:, :2] + faces.xyxy[:, 2:]) / 2
    return faces[[int(np.argmin(np.linalg.norm(centres - [w / 2, h / 2], axis=1)))]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=150)
    parser.add_argument("--embedder", action="append", default=None)
    args = parser.parse_args()
    root = Path(os.environ.get("FACESENSE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "lfw"
    people = [p for p in sorted(root.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2][: args.people]
    print(cpu_info().describe())
    print(f"{len(people)} LFW people: first image enrolled, {sum(len(list(p.glob('*.jpg'))) - 1 for p in people)} probes")
    print(f"{'embedder':<14} {'cos median':>10} {'cos p5':>7} {'cos min':>7} {'rank-1 photo/thumb':>19} {'named photo/thumb':>18}")
    for kind in args.embedder or ["dlib+sface", "facenet+dlib"]:
        analyzer = FaceAnalyzer(embedder=make_embedder(kind))
        photo, thumb, probes, labels, names = [], [], [], [], []
        for person in people:
            files = sorted(person.glob("*.jpg"))
            image = load_image(files[0])
            faces = analyzer.detect(image)
            if len(faces) == 0:
                continue
            face = central(faces, image.shape)
            found = face_from_thumbnail(thumbnail_jpeg(image, face), analyzer)
            if isinstance(found, str):
                continue
            photo.append(analyzer.embed(image, face).embeddings[0])
            thumb.append(analyzer.embed(*found).embeddings[0])
            names.append(person.name)
            for f in files[1:]:
                probe = load_image(f)
                pf = analyzer.detect(probe)
                if len(pf):
                    probes.append(analyzer.embed(probe, central(pf, probe.shape)).embeddings[0])
                    labels.append(person.name)
        cos = np.sum(np.asarray(photo) * np.asarray(thumb), axis=1)
        row = []
        for gallery in (photo, thumb):
            m = make_matcher("knn", model_id=analyzer.model_id, threshold="auto").fit(np.asarray(gallery), names)
            result = m.match(np.asarray(probes))
            rank1 = np.mean([c == y for c, y in zip(result.candidates, labels, strict=True)])
            named = np.mean([n == y for n, y in zip(result.names, labels, strict=True)])
            row.append((rank1, named))
        print(
            f"{kind:<14} {np.median(cos):10.4f} {np.percentile(cos, 5):7.4f} {cos.min():7.4f} "
            f"{row[0][0]:9.1%} / {row[1][0]:6.1%} {row[0][1]:8.1%} / {row[1][1]:6.1%}"
        )


if __name__ == "__main__":
    main()
