"""Retrieval-augmented question answering over encyclopedia articles: chunking, indexing, retrieval, answers."""

__version__ = "0.1.0"
