//! Checkpoint readers: every format maps onto the OpenAI tensor names.
