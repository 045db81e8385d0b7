"""Corpora: turning files, JSONL and the Python documentation into indexed passages.

The API the CLI and the agent call: `index_paths`, `index_documents`, `list_corpora`, `open_corpus`.
"""

from openheavy.corpus.catalog import (
    DEFAULT_CORPUS,
    CorpusInfo,
    IndexReport,
    ProgressCallback,
    index_documents,
    index_paths,
    list_corpora,
    open_corpus,
)
from openheavy.corpus.sources import SourceDoc

__all__ = [
    "DEFAULT_CORPUS",
    "CorpusInfo",
    "IndexReport",
    "ProgressCallback",
    "SourceDoc",
    "index_documents",
    "index_paths",
    "list_corpora",
    "open_corpus",
]
