import sys

import numpy as np
import zeroclip as clip
from PIL import Image

model_path, image_path = sys.argv[1], sys.argv[2]  # the README's "ViT-B/32" and "CLIP.png"
model, preprocess = clip.load(model_path, device="cpu")

image = preprocess(Image.open(image_path))[None]
text = clip.tokenize(["a diagram", "a dog", "a cat"])

image_features = model.encode_image(image)
text_features = model.encode_text(text)

logits_per_image, logits_per_text = model(image, text)
e = np.exp(logits_per_image - logits_per_image.max(-1, keepdims=True))
probs = e / e.sum(-1, keepdims=True)

print("Label probs:", probs)  # prints: [[0.9927937  0.00421068 0.00299572]] with OpenAI's weights
