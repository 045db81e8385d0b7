"""Local search benchmark: index build time, query latency, a retrieval sanity check, and the cost of
the integrity check (`PRAGMA quick_check`) every open of a corpus runs.

Corpora:
  (a) pydocs   — the default corpus, built from scratch (rendering the module docs included);
                 50 Python questions, each with the module that should answer it (hit@5).
  (b) hotpotqa — every context paragraph of a HotpotQA file, deduplicated by (title, text);
                 its first 50 questions (recall@5 of the supporting paragraphs).

Prints a table and writes JSON. Indexes go to a temporary folder. Never gates CI.

    .venv/bin/python benchmarks/bench_index.py --out bench_index.json \
        --hotpotqa ../shared/data/hotpotqa/hotpotqa_dev_300.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openheavy.corpus import SourceDoc, index_documents, open_corpus
from openheavy.search.local import LocalIndex

# (question, module whose documentation answers it)
PYTHON_QUESTIONS: list[tuple[str, str]] = [
    ("How do I run a subprocess with a timeout and capture its output?", "subprocess"),
    ("parse a JSON string into a dictionary", "json"),
    ("read rows from a CSV file", "csv"),
    ("create a temporary directory that is removed afterwards", "tempfile"),
    ("match a regular expression with named groups", "re"),
    ("get the current time in UTC with a timezone", "datetime"),
    ("compute the SHA-256 hash of bytes", "hashlib"),
    ("run functions in a pool of threads and wait for results", "concurrent.futures"),
    ("copy a whole directory tree", "shutil"),
    ("list files matching a wildcard pattern like *.txt", "glob"),
    ("parse command line arguments with options and help", "argparse"),
    ("log messages to a file with rotation", "logging.handlers"),
    ("count how many times each item occurs", "collections"),
    ("open a SQLite database and run a query", "sqlite3"),
    ("fetch a web page over HTTP", "urllib.request"),
    ("split a URL into scheme, host and path", "urllib.parse"),
    ("serialize Python objects to bytes and back with pickle", "pickle"),
    ("generate a random integer in a range", "random"),
    ("compress data with gzip", "gzip"),
    ("read and write zip archives", "zipfile"),
    ("compute the mean and standard deviation of numbers", "statistics"),
    ("exact decimal arithmetic for money", "decimal"),
    ("rational numbers as fractions", "fractions"),
    ("measure the execution time of small code snippets", "timeit"),
    ("deep copy a nested object", "copy"),
    ("sort a list of dictionaries by a key with itemgetter", "operator"),
    ("cache the results of a function call with lru_cache", "functools"),
    ("iterate over all combinations and permutations", "itertools"),
    ("define an enumeration of named constants", "enum"),
    ("declare a class with typed fields automatically generating __init__", "dataclasses"),
    ("type hints for optional values and generics", "typing"),
    ("send an email through an SMTP server", "smtplib"),
    ("parse an XML document into an element tree", "xml.etree.ElementTree"),
    ("escape special characters for HTML", "html"),
    ("encode binary data as base64 text", "base64"),
    ("generate a universally unique identifier", "uuid"),
    ("create a network socket and connect to a server", "socket"),
    ("wrap a socket with TLS encryption", "ssl"),
    ("run coroutines concurrently with an event loop", "asyncio"),
    ("start a separate process and share data through a queue", "multiprocessing"),
    ("use a lock to protect shared state between threads", "threading"),
    ("inspect the signature and source code of a function", "inspect"),
    ("parse Python source code into an abstract syntax tree", "ast"),
    ("format a traceback of the current exception", "traceback"),
    ("work with filesystem paths in an object-oriented way", "pathlib"),
    ("read environment variables", "os"),
    ("read an INI configuration file", "configparser"),
    ("wrap long text into lines of a given width", "textwrap"),
    ("compare two sequences and show a unified diff", "difflib"),
    ("mock an object in a unit test", "unittest.mock"),
]


@dataclass
class CorpusFigures:
    corpus: str
    build_seconds: float
    documents: int
    chunks: int
    index_mib: float
    queries: int
    query_p50_ms: float
    query_p95_ms: float
    quick_check_ms: float
    quality_metric: str
    quality: float
    notes: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timed_searches(
    index: LocalIndex, queries: list[str], k: int, repeat: int
) -> tuple[list[float], list[list[str]]]:
    """Latencies (ms) of every search, and the doc ids of the first round's hits per query."""
    latencies: list[float] = []
    results: list[list[str]] = []
    for round_number in range(repeat):
        for query in queries:
            started = time.perf_counter()
            hits = index.search_sync(query, k)
            latencies.append((time.perf_counter() - started) * 1000)
            if round_number == 0:
                results.append([hit.doc_id for hit in hits])
    return latencies, results


def timed_quick_check(index: LocalIndex, repeat: int) -> float:
    """The median time (ms) of the integrity check that opening a corpus runs."""
    times = []
    for _ in range(max(repeat, 1)):
        started = time.perf_counter()
        problems = index.integrity_problems()
        times.append((time.perf_counter() - started) * 1000)
        assert not problems, problems
    return statistics.median(times)


def bench_pydocs(index_dir: Path, k: int, repeat: int) -> CorpusFigures:
    started = time.perf_counter()
    with open_corpus("pydocs", index_dir) as index:
        build_seconds = time.perf_counter() - started
        stats = index.stats()
        queries = [question for question, _ in PYTHON_QUESTIONS]
        latencies, results = timed_searches(index, queries, k, repeat)
        quick_check_ms = timed_quick_check(index, repeat)
    misses = [
        question
        for (question, module), doc_ids in zip(PYTHON_QUESTIONS, results, strict=True)
        if f"module:{module}" not in doc_ids
    ]
    return CorpusFigures(
        corpus="pydocs",
        build_seconds=build_seconds,
        documents=stats.documents,
        chunks=stats.chunks,
        index_mib=(index_dir / "pydocs.sqlite").stat().st_size / 2**20,
        queries=len(latencies),
        query_p50_ms=statistics.median(latencies),
        query_p95_ms=percentile(latencies, 0.95),
        quick_check_ms=quick_check_ms,
        quality_metric=f"expected module in top {k}",
        quality=1 - len(misses) / len(PYTHON_QUESTIONS),
        notes={"misses": misses},
    )


def hotpotqa_corpus(path: Path) -> tuple[list[SourceDoc], list[tuple[str, set[str]]]]:
    """The deduplicated context paragraphs as documents, and (question, supporting doc ids) pairs."""
    docs: dict[str, SourceDoc] = {}
    questions: list[tuple[str, set[str]]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            supporting: set[str] = set()
            for context in record["contexts"]:
                title, text = context["title"], context["paragraph_text"]
                doc_id = "hp:" + hashlib.sha1(f"{title}\x00{text}".encode()).hexdigest()[:12]
                docs.setdefault(doc_id, SourceDoc(doc_id, title, text))
                if context["is_supporting"]:
                    supporting.add(doc_id)
            questions.append((record["question_text"], supporting))
    return list(docs.values()), questions


def bench_hotpotqa(path: Path, index_dir: Path, k: int, repeat: int, n_questions: int) -> CorpusFigures:
    docs, questions = hotpotqa_corpus(path)
    report = index_documents(docs, "hotpotqa", index_dir)
    questions = questions[:n_questions]
    with open_corpus("hotpotqa", index_dir) as index:
        latencies, results = timed_searches(index, [q for q, _ in questions], k, repeat)
        quick_check_ms = timed_quick_check(index, repeat)
    found = sum(
        len(supporting & set(doc_ids)) for (_, supporting), doc_ids in zip(questions, results, strict=True)
    )
    total = sum(len(supporting) for _, supporting in questions)
    both = sum(
        supporting <= set(doc_ids) for (_, supporting), doc_ids in zip(questions, results, strict=True)
    )
    return CorpusFigures(
        corpus="hotpotqa",
        build_seconds=report.seconds,
        documents=report.documents,
        chunks=report.chunks,
        index_mib=report.path.stat().st_size / 2**20,
        queries=len(latencies),
        query_p50_ms=statistics.median(latencies),
        query_p95_ms=percentile(latencies, 0.95),
        quick_check_ms=quick_check_ms,
        quality_metric=f"supporting-paragraph recall@{k}",
        quality=found / total if total else 0.0,
        notes={"all_supporting_in_top_k": both / len(questions), "source": str(path)},
    )


def main() -> None:
    default_hotpotqa = Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpotqa_dev_300.jsonl"
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hotpotqa", type=Path, default=default_hotpotqa, help="HotpotQA JSONL with contexts"
    )
    parser.add_argument("--out", type=Path, default=Path("bench_index.json"), help="where to write the JSON")
    parser.add_argument("--k", type=int, default=5, help="hits per query")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the query set (latency samples)")
    parser.add_argument("--questions", type=int, default=50, help="HotpotQA questions to ask")
    args = parser.parse_args()

    figures: list[CorpusFigures] = []
    with tempfile.TemporaryDirectory(prefix="bench-index-") as folder:
        figures.append(bench_pydocs(Path(folder), args.k, args.repeat))
        if args.hotpotqa.is_file():
            figures.append(bench_hotpotqa(args.hotpotqa, Path(folder), args.k, args.repeat, args.questions))
        else:
            print(f"skipping hotpotqa: no file at {args.hotpotqa}", file=sys.stderr)

    header = f"{'corpus':10} {'build s':>8} {'docs':>6} {'chunks':>7} {'MiB':>6} {'p50 ms':>7} {'p95 ms':>7}"
    header += f" {'check ms':>8}"
    header += "  quality"
    print(header)
    print("-" * len(header))
    for f in figures:
        print(
            f"{f.corpus:10} {f.build_seconds:8.1f} {f.documents:6d} {f.chunks:7d} {f.index_mib:6.1f}"
            f" {f.query_p50_ms:7.2f} {f.query_p95_ms:7.2f} {f.quick_check_ms:8.1f}"
            f"  {f.quality:.2f} ({f.quality_metric})"
        )
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "k": args.k,
        "repeat": args.repeat,
        "corpora": [asdict(f) for f in figures],
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
