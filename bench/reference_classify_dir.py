"""The reference doing what `zeroclip classify DIR --batch-size 16` does, as a CLIP user would
write it: OpenAI's `clip` on PyTorch (fp32, CPU), the labels encoded once, then every image of a
directory opened with PIL, preprocessed by `clip.load`'s transform, in batches of 16, softmax,
the top label printed per image.

    python reference_classify_dir.py DIR CHECKPOINT LABEL...
"""

import os
import sys

import torch
from PIL import Image

import clip

directory, checkpoint = sys.argv[1], sys.argv[2]
labels = sys.argv[3:]
model, preprocess = clip.load(checkpoint, device="cpu", jit=False)
files = sorted(os.path.join(directory, f) for f in os.listdir(directory))
with torch.no_grad():
    text = model.encode_text(clip.tokenize(labels))
    text = text / text.norm(dim=-1, keepdim=True)
    for start in range(0, len(files), 16):
        batch = files[start:start + 16]
        pixels = torch.stack([preprocess(Image.open(f)) for f in batch])
        image = model.encode_image(pixels)
        image = image / image.norm(dim=-1, keepdim=True)
        probs = (model.logit_scale.exp() * image @ text.T).softmax(dim=-1)
        for f, p in zip(batch, probs):
            print(f"{f}\t{labels[int(p.argmax())]}\t{float(p.max()):.4f}")
