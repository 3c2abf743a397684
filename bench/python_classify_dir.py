"""`zeroclip.Classifier.classify` over every file of a directory (the Python side of the
directory benchmark in bench/python_api.py): load, build the classifier, classify, print a count."""

import os
import sys

import zeroclip

directory, model_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
labels = sys.argv[4:]
zeroclip.set_num_threads(threads)
model, _ = zeroclip.load(model_path)
classifier = zeroclip.Classifier(model, labels, cache=False, batch_size=16)
files = sorted(os.path.join(directory, f) for f in os.listdir(directory))
results = classifier.classify(files)
print(sum("predictions" in r for r in results), "of", len(results))
