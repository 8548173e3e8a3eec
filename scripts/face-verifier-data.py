#!/usr/bin/python3
"""Writes the data set the face verifier (models/face-verifier.facet, docs/faces.md) is trained on.

    scripts/face-verifier-data.py --fer FER2013_DIR --fer-bin build/release/fer --out DIR

DIR/{train,test}/{face,background}/*.png, 48 x 48 gray:
  face        FER-2013 faces. train: the training split's faces from the 201st of each class on
              (the first 200 frame the crop calibration and the validation scenes of
              docs/faces.md), at most --faces-per-class per class; test: PublicTest faces 41 to
              140 of each class (the first 40 make the test scenes).
  background  pictures without people that Debian packages ship (opencv-doc, python3-skimage),
              split by picture (every sixth into test): random squares of every size, and the
              "faces" dlib finds in them at a score threshold far below its own (fer predict
              --detector-threshold, on each picture, its mirror image and copies at other
              scales), cut out as the verifier sees them (by the eyes). These hard negatives
              are what the verifier is for. With --misframed N (off by default; it did not help,
              docs/faces.md), also faces of the split's own pool cut out too loose, too tight or
              off centre (a crop whose square overlaps the face's own square at IoU < 0.45).
Pictures with people in them (the chessboard calibration pairs, basketball, messi5, astronaut,
camera, lena) are left out, so none of the real photos of docs/faces.md are trained on.
"""
import argparse
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np

PICTURE_FOLDERS = ["/usr/share/doc/opencv-doc/examples/data",
                   "/usr/lib/python3/dist-packages/skimage/data"]
WITH_PEOPLE = ("left", "right", "basketball", "messi", "astronaut", "camera", "lena")
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def background_pictures():
    files = []
    for folder in PICTURE_FOLDERS:
        for path in sorted(glob.glob(os.path.join(folder, "*"))):
            name = os.path.basename(path).lower()
            if not name.endswith((".png", ".jpg", ".jpeg")) or name.startswith(WITH_PEOPLE):
                continue
            image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if image is not None and min(image.shape) >= 64:
                files.append(path)
    return files


def write(folder, stem, crop):
    os.makedirs(folder, exist_ok=True)
    cv2.imwrite(os.path.join(folder, stem + ".png"), crop)


def faces(fer, split, skip, take, out, rng):
    count = 0
    for label in CLASSES:
        files = sorted(glob.glob(os.path.join(fer, split, label, "*")))[skip:skip + take]
        for path in files:
            shutil.copyfile(path, os.path.join(out, f"{label}_{os.path.basename(path)}"))
            count += 1
    return count


def random_squares(image, count, rng):
    h, w = image.shape
    for _ in range(count):
        side = int(round(np.exp(rng.uniform(np.log(24), np.log(min(h, w))))))
        x, y = rng.randrange(0, w - side + 1), rng.randrange(0, h - side + 1)
        yield cv2.resize(image[y:y + side, x:x + side], (48, 48), interpolation=cv2.INTER_AREA)


def smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def misframed(face, background, rng):
    """One 48 x 48 crop of `face` (a FER-2013 48 x 48 frame) framed wrongly, as a detector's box in
    the wrong place would cut it: zoomed out (the crop's side 1.5 to 2.2 times the face's), zoomed
    in (0.45 to 0.67 times) or shifted by 0.38 to 0.6 of the side. Around the face, its border
    pixels go on and fade into `background` (a gray square) over half its side, as hair and neck
    go on in a photo."""
    mode = rng.choice(("out", "in", "shift"))
    if mode == "in":
        zoom = rng.uniform(1.5, 2.2)
        big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_LINEAR)
        window = int(round(192 / zoom))
        x, y = rng.randrange(0, 192 - window + 1), rng.randrange(0, 192 - window + 1)
        return cv2.resize(big[y:y + window, x:x + window], (48, 48), interpolation=cv2.INTER_AREA)
    side = 96  # the face's square, drawn at twice the crop's resolution
    scale = rng.uniform(1.5, 2.2) if mode == "out" else 1.0
    crop_side = int(round(side * scale))
    if mode == "out":
        dx, dy = (rng.uniform(-0.15, 0.15) * side for _ in range(2))
    else:
        shift = rng.uniform(0.38, 0.6) * side
        angle = rng.uniform(0, 2 * np.pi)
        dx, dy = shift * np.cos(angle), shift * np.sin(angle)
    ring = side // 2
    margin = crop_side  # room for the crop however far it is shifted
    canvas = cv2.resize(background, (side + 2 * margin,) * 2, interpolation=cv2.INTER_AREA)
    canvas = canvas.astype(np.float64)
    grown = cv2.copyMakeBorder(cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR),
                               ring, ring, ring, ring, cv2.BORDER_REPLICATE).astype(np.float64)
    u = np.arange(side + 2 * ring) - ring
    outside = np.maximum(np.maximum(-u, u - (side - 1)), 0)  # distance past the square, per axis
    alpha = smoothstep(1 - np.hypot(outside[None, :], outside[:, None]) / ring)
    top = margin - ring
    region = canvas[top:top + side + 2 * ring, top:top + side + 2 * ring]
    region[:] = alpha * grown + (1 - alpha) * region
    centre = margin + side / 2
    x0 = int(round(centre + dx - crop_side / 2))
    y0 = int(round(centre + dy - crop_side / 2))
    crop = canvas[y0:y0 + crop_side, x0:x0 + crop_side]
    return cv2.resize(np.clip(crop, 0, 255).astype(np.uint8), (48, 48),
                      interpolation=cv2.INTER_AREA)


def misframed_faces(face_folder, pictures, count, rng, out):
    files = sorted(glob.glob(os.path.join(face_folder, "*")))
    images = [cv2.imread(path, cv2.IMREAD_GRAYSCALE) for path in pictures]
    for k in range(count):
        face = cv2.imread(rng.choice(files), cv2.IMREAD_GRAYSCALE)
        picture = rng.choice(images)
        h, w = picture.shape
        side = rng.randrange(32, min(h, w) + 1)
        x, y = rng.randrange(0, w - side + 1), rng.randrange(0, h - side + 1)
        write(out, f"misframed_{k}", misframed(face, picture[y:y + side, x:x + side], rng))
    return count


def hard_negatives(pictures, fer_bin, threshold, out):
    """dlib's candidates in each picture, its mirror image and copies at 0.5 and 1.5 times, as
    fer predict --framing eyes --save-faces cuts them out."""
    with tempfile.TemporaryDirectory() as work:
        copies = os.path.join(work, "pictures")
        os.makedirs(copies)
        for i, path in enumerate(pictures):
            image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            for scale in (0.5, 1.0, 1.5):
                scaled = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                if min(scaled.shape) < 64:
                    continue
                cv2.imwrite(os.path.join(copies, f"p{i}_s{scale}.png"), scaled)
                cv2.imwrite(os.path.join(copies, f"p{i}_s{scale}_m.png"), cv2.flip(scaled, 1))
        saved = os.path.join(work, "saved")
        subprocess.run([fer_bin, "predict", "--detector", "dlib", "--verifier", "none", "--detector-threshold",
                        str(threshold), "--framing", "eyes", "--save-faces", saved, "--skip-bad", copies],
                       check=True, stdout=subprocess.DEVNULL)
        count = 0
        for path in sorted(glob.glob(os.path.join(saved, "*", "*.png"))):
            shutil.copyfile(path, os.path.join(out, "hard_" + os.path.basename(path)))
            count += 1
        return count


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fer", required=True, help="FER-2013 folder (train/<class>, test/<class>)")
    p.add_argument("--fer-bin", required=True, help="the fer program")
    p.add_argument("--out", required=True)
    p.add_argument("--faces-per-class", type=int, default=1500)
    p.add_argument("--squares-per-picture", type=int, default=60)
    p.add_argument("--threshold", type=float, default=-1.5, help="dlib score for hard negatives")
    p.add_argument("--misframed", type=int, default=0,
                   help="misframed faces in train (a tenth as many in test)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    if os.path.exists(a.out):
        sys.exit(f"{a.out} exists; give a new folder")
    counts = {}
    for split, skip, take in (("train", 200, a.faces_per_class), ("test", 40, 100)):
        folder = os.path.join(a.out, split, "face")
        os.makedirs(folder)
        counts[f"{split}/face"] = faces(a.fer, split, skip, take, folder, rng)
    pictures = background_pictures()
    test_pictures = pictures[5::6]
    train_pictures = [p for p in pictures if p not in test_pictures]
    for split, chosen in (("train", train_pictures), ("test", test_pictures)):
        folder = os.path.join(a.out, split, "background")
        os.makedirs(folder)
        n = 0
        for i, path in enumerate(chosen):
            image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            for k, crop in enumerate(random_squares(image, a.squares_per_picture, rng)):
                write(folder, f"square_{i}_{k}", crop)
                n += 1
        counts[f"{split}/background random"] = n
        counts[f"{split}/background hard"] = hard_negatives(chosen, a.fer_bin, a.threshold, folder)
        counts[f"{split} pictures"] = len(chosen)
    # A stream of its own, so that the data above does not depend on --misframed.
    misframed_rng = random.Random(a.seed + 1)
    for split, chosen, count in (("train", train_pictures, a.misframed),
                                 ("test", test_pictures, a.misframed // 10)):
        counts[f"{split}/background misframed"] = misframed_faces(
            os.path.join(a.out, split, "face"), chosen, count, misframed_rng,
            os.path.join(a.out, split, "background"))
    for key, value in counts.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
