//! Downloading and caching checkpoints, as `clip.load` does.
