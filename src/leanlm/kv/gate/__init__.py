"""Attention-Gate: a trainable gate in front of each attention layer that decides which prompt tokens each
KV head keeps in the cache."""
