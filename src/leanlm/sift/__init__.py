"""SIFT: grounded reasoning with stickers."""
