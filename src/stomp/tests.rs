//! Codec tests (spec examples, split-at-every-byte, round trips).
