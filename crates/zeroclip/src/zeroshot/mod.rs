//! Zero-shot classification: templates, ensembling, label cache, classifier.
