"""Benchmark datasets as `EvalItem`s, and the local corpora their questions are answered from.

Every loader reads the upstream file format by path (the data is never copied into the repository),
validates each record with a pydantic model, and yields items in file order, so `--limit N` always
takes the same first N questions.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from openheavy.errors import ConfigError, CorpusError

ItemKind = Literal["qa", "math", "wide"]

#: The dataset names `load_dataset` knows; anything else must be a path to a generic .jsonl file.
DATASET_NAMES: tuple[str, ...] = ("hotpotqa", "musique", "gsm8k", "math500", "peps-wide")

#: The verifier `rank:N` votes with on a dataset when no `--verifier` is given: self-consistency over what
#: the dataset's answers are (numbers for GSM8K, math expressions for MATH-500); `vote` elsewhere.
DEFAULT_VERIFIERS: dict[str, str] = {"gsm8k": "check:numeric", "math500": "check:math"}


def default_verifier(dataset: str) -> str:
    """The verifier for `dataset`'s rank runs when none is named (`DEFAULT_VERIFIERS`, else "vote")."""
    return DEFAULT_VERIFIERS.get(dataset, "vote")


#: Overrides the benchmark data root. Deliberately not `OPENHEAVY_DATA_DIR`: `Settings.data_dir` already
#: reads that variable for the user data directory (indexes, runs), and the two must not be confused.
DATA_DIR_ENV = "OPENHEAVY_EVAL_DATA_DIR"

DEFAULT_DATA_DIR = Path("../shared/data")


class DatasetError(ConfigError):
    """A dataset file is missing or not in the expected format."""


class CorpusDoc(NamedTuple):
    """One document of an evaluation corpus, in the field order `openheavy.corpus.SourceDoc` takes."""

    id: str
    title: str
    text: str
    url: str = ""


@dataclass(frozen=True, eq=False)
class CorpusSpec:
    """A named corpus that some items are answered from, and how to produce its documents.

    Documents are produced lazily from the source files each time `documents()` is called, so loading
    a dataset stays cheap when the index already exists.
    """

    name: str  # index name, e.g. "eval-hotpotqa"
    sources: tuple[Path, ...]  # the files the documents are read from, for messages and the report
    read: Callable[[], Iterator[CorpusDoc]]
    # How the chunker finds headings: PEPs are reStructuredText, Wikipedia paragraphs plain text.
    text_format: Literal["text", "markdown", "rst"] = "text"

    def documents(self) -> Iterator[CorpusDoc]:
        """Every document of the corpus, deduplicated, in a stable order."""
        return self.read()


@dataclass(frozen=True)
class EvalItem:
    """One benchmark question with its gold answers (aliases for QA, gold URLs or ids for wide search)."""

    id: str
    question: str
    answers: tuple[str, ...]
    kind: ItemKind
    corpus: CorpusSpec | None = None


class IndexDocuments(Protocol):
    """The shape of `openheavy.corpus.index_documents` as `build_corpus` calls it."""

    def __call__(
        self, docs: Iterable[Any], name: str, index_dir: Path, progress: Callable[..., Any] | None = None
    ) -> object: ...


# ---------------------------------------------------------------- record schemas (the boundary)


class _Record(BaseModel):
    # Upstream files carry fields we do not use; ignore them rather than fail on a new column.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _HotpotSpans(_Record):
    spans: list[str]


class _HotpotContext(_Record):
    title: str
    paragraph_text: str


class _HotpotRecord(_Record):
    question_id: str
    question_text: str
    answers_objects: list[_HotpotSpans]
    contexts: list[_HotpotContext]


class _MusiqueParagraph(_Record):
    title: str
    paragraph_text: str


class _MusiqueRecord(_Record):
    id: str
    question: str
    answer: str
    answer_aliases: list[str] = Field(default_factory=list)
    paragraphs: list[_MusiqueParagraph] = Field(default_factory=list)


class _Passage(_Record):
    title: str
    text: str


class _GsmRecord(_Record):
    question: str
    answer: str


class _MathRecord(_Record):
    problem: str
    answer: str
    unique_id: str


class _PepRecord(_Record):
    id: str
    pep: int
    title: str
    url: str
    text: str


class _WideRecord(_Record):
    id: str
    question: str
    answer_urls: list[str]


class _GenericRecord(_Record):
    id: str | int | None = None
    question: str
    answer: str | None = None
    answers: list[str] | None = None
    kind: ItemKind = "qa"
    corpus: str | None = None

    @model_validator(mode="after")
    def _has_answers(self) -> _GenericRecord:
        if self.answer is None and not self.answers:
            raise ValueError("needs `answer` (a string) or `answers` (a list of strings)")
        return self

    def gold(self) -> tuple[str, ...]:
        if self.answers:
            return tuple(self.answers)
        assert self.answer is not None  # guaranteed by the validator
        return (self.answer,)


class _GenericDoc(_Record):
    id: str | int | None = None
    title: str = ""
    text: str
    url: str = ""


_R = TypeVar("_R", bound=BaseModel)


# ---------------------------------------------------------------- reading helpers


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(
            f"{what} not found at {path} — pass --data-dir (or set {DATA_DIR_ENV}) to the folder that "
            f"holds the benchmark data, or give the path to the file"
        )
    return path


def _utf8_text(path: Path) -> str:
    """The text of a JSON or JSONL file; one that is not UTF-8 is refused by line, with the command that
    converts it (the corpus reader's wording: imported here, on call, to keep loading light)."""
    from openheavy.corpus.sources import jsonl_text

    try:
        return jsonl_text(path, path.read_bytes())
    except CorpusError as exc:
        raise DatasetError(str(exc)) from None


def _read_jsonl(path: Path, model: type[_R]) -> Iterator[_R]:
    for number, line in enumerate(_utf8_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield model.model_validate_json(line)
        except ValidationError as exc:
            raise DatasetError(f"{path}:{number}: not a valid record: {_first_error(exc)}") from exc


def _read_json_list(path: Path, model: type[_R]) -> list[_R]:
    try:
        return TypeAdapter(list[model]).validate_json(_utf8_text(path))  # type: ignore[valid-type]
    except ValidationError as exc:
        raise DatasetError(f"{path}: not a JSON list of records: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def passage_id(title: str, text: str) -> str:
    """A stable id for a passage that has none upstream: the same passage always gets the same id."""
    return hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]


def _dedupe(docs: Iterable[CorpusDoc]) -> Iterator[CorpusDoc]:
    seen: set[str] = set()
    for doc in docs:
        if doc.id not in seen:
            seen.add(doc.id)
            yield doc


def _passages(pairs: Iterable[tuple[str, str]]) -> Iterator[CorpusDoc]:
    return _dedupe(CorpusDoc(passage_id(title, text), title, text) for title, text in pairs)


# ---------------------------------------------------------------- loaders


def load_hotpotqa(path: Path) -> list[EvalItem]:
    """HotpotQA (distractor setting). The corpus is the union of every question's 10 paragraphs, so each
    question's gold paragraphs sit among the other questions' paragraphs as distractors."""
    _require(path, "HotpotQA file")

    def read() -> Iterator[CorpusDoc]:
        records = _read_jsonl(path, _HotpotRecord)
        return _passages((c.title, c.paragraph_text) for r in records for c in r.contexts)

    corpus = CorpusSpec("eval-hotpotqa", (path,), read)
    return [
        EvalItem(
            id=r.question_id,
            question=r.question_text,
            answers=tuple(span for obj in r.answers_objects for span in obj.spans),
            kind="qa",
            corpus=corpus,
        )
        for r in _read_jsonl(path, _HotpotRecord)
    ]


def load_musique(questions_path: Path, corpus_path: Path) -> list[EvalItem]:
    """MuSiQue-Ans; gold = `answer` plus `answer_aliases`. The corpus file holds every question's
    paragraphs and more; titles repeat (one Wikipedia page, several paragraphs), so ids hash the text."""
    _require(questions_path, "MuSiQue questions file")
    _require(corpus_path, "MuSiQue corpus file")

    def read() -> Iterator[CorpusDoc]:
        return _passages((p.title, p.text) for p in _read_json_list(corpus_path, _Passage))

    corpus = CorpusSpec("eval-musique", (corpus_path,), read)
    return [
        EvalItem(r.id, r.question, (r.answer, *r.answer_aliases), "qa", corpus)
        for r in _read_json_list(questions_path, _MusiqueRecord)
    ]


def gsm8k_final_answer(solution: str) -> str:
    """The gold final answer of a GSM8K solution: the text after its last `####`."""
    if "####" not in solution:
        raise ValueError("GSM8K solution without a '####' final answer")
    return solution.rsplit("####", 1)[1].strip()


def load_gsm8k(path: Path) -> list[EvalItem]:
    """GSM8K test questions; no corpus (no tools). Upstream has no ids, so the id is the line position."""
    _require(path, "GSM8K file")
    items = []
    for index, record in enumerate(_read_jsonl(path, _GsmRecord)):
        try:
            gold = gsm8k_final_answer(record.answer)
        except ValueError as exc:
            raise DatasetError(f"{path}: item {index}: {exc}") from exc
        items.append(EvalItem(f"gsm8k-{index:04d}", record.question, (gold,), "math"))
    return items


def load_math500(path: Path) -> list[EvalItem]:
    """MATH-500; gold is the LaTeX `answer` field. No corpus."""
    _require(path, "MATH-500 file")
    return [EvalItem(r.unique_id, r.problem, (r.answer,), "math") for r in _read_jsonl(path, _MathRecord)]


def pep_title(number: int, title: str) -> str:
    """The document title for a PEP, with its number so that a search for "PEP 8" finds it."""
    return f"PEP {number} – {title}"


def load_peps_wide(tasks_path: Path, corpus_path: Path) -> list[EvalItem]:
    """Wide-search tasks over the PEP corpus; gold is the complete list of PEP URLs, and each corpus
    document's url is that same canonical URL, so a cited document is directly a gold identifier."""
    _require(tasks_path, "PEP wide-search tasks file")
    _require(corpus_path, "PEP corpus file")

    def read() -> Iterator[CorpusDoc]:
        return _dedupe(
            CorpusDoc(p.id, pep_title(p.pep, p.title), p.text, p.url)
            for p in _read_jsonl(corpus_path, _PepRecord)
        )

    corpus = CorpusSpec("eval-peps", (corpus_path,), read, text_format="rst")
    return [
        EvalItem(r.id, r.question, tuple(r.answer_urls), "wide", corpus)
        for r in _read_jsonl(tasks_path, _WideRecord)
    ]


def load_jsonl(path: Path) -> list[EvalItem]:
    """A user's own dataset: one JSON object per line with `question`, and `answer` (a string) or
    `answers` (aliases, or the gold URLs/ids for `"kind": "wide"`); optional `id`, `kind` (qa, math,
    wide) and `corpus`: a .jsonl or .json file of `{title, text, id?, url?}` documents, relative to the
    dataset file."""
    _require(path, "dataset file")
    corpora: dict[Path, CorpusSpec] = {}
    items = []
    for index, record in enumerate(_read_jsonl(path, _GenericRecord)):
        corpus = None
        if record.corpus:
            corpus_path = (path.parent / record.corpus).resolve()
            if corpus_path not in corpora:
                corpora[corpus_path] = _generic_corpus(corpus_path)
            corpus = corpora[corpus_path]
        item_id = str(record.id) if record.id is not None else f"{path.stem}-{index:04d}"
        items.append(EvalItem(item_id, record.question, record.gold(), record.kind, corpus))
    return items


def _generic_corpus(path: Path) -> CorpusSpec:
    _require(path, "corpus file")
    # The resolved path is part of the name so that two different `docs.jsonl` never share an index.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:6]

    def read() -> Iterator[CorpusDoc]:
        records: Iterable[_GenericDoc] = (
            _read_json_list(path, _GenericDoc) if path.suffix == ".json" else _read_jsonl(path, _GenericDoc)
        )
        return _dedupe(
            CorpusDoc(str(d.id) if d.id is not None else passage_id(d.title, d.text), d.title, d.text, d.url)
            for d in records
        )

    return CorpusSpec(f"eval-{path.stem}-{digest}", (path,), read)


# ---------------------------------------------------------------- by name


def resolve_data_dir(data_dir: Path | None = None) -> Path:
    """The benchmark data root: `data_dir` if given, else `$OPENHEAVY_EVAL_DATA_DIR`, else
    `../shared/data` relative to the working directory."""
    if data_dir is not None:
        return data_dir
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_DATA_DIR


def load_dataset(name: str, data_dir: Path | None = None, limit: int | None = None) -> list[EvalItem]:
    """Load a dataset by name (`hotpotqa`, `musique`, `gsm8k`, `math500`, `peps-wide`) or from a path to
    a generic .jsonl file; `limit` keeps the first N items. Raises `DatasetError` naming a missing file."""
    root = resolve_data_dir(data_dir)
    loaders: dict[str, Callable[[], list[EvalItem]]] = {
        "hotpotqa": lambda: load_hotpotqa(root / "hotpotqa" / "hotpotqa_dev_300.jsonl"),
        "musique": lambda: load_musique(
            root / "musique" / "musique_60.json", root / "musique" / "musique_corpus.json"
        ),
        "gsm8k": lambda: load_gsm8k(root / "gsm8k" / "gsm8k_test_1000.jsonl"),
        "math500": lambda: load_math500(root / "math500" / "math500.jsonl"),
        "peps-wide": lambda: load_peps_wide(root / "peps" / "wide_dev.jsonl", root / "peps" / "peps.jsonl"),
    }
    if name in loaders:
        items = loaders[name]()
    elif name.endswith(".jsonl"):
        items = load_jsonl(Path(name))
    else:
        raise DatasetError(
            f"unknown dataset {name!r} — use one of {', '.join(DATASET_NAMES)} or a path to a .jsonl file"
        )
    if not items:
        raise DatasetError(
            f"dataset {name} holds no questions — a .jsonl dataset needs one JSON object per line with "
            '"question" and "answer" (or "answers")'
        )
    _check_unique_ids(items, name)
    if limit is not None:
        if limit < 1:
            raise DatasetError(f"--limit must be at least 1, not {limit}")
        items = items[:limit]
    return items


def _check_unique_ids(items: Sequence[EvalItem], name: str) -> None:
    # Results are keyed by item id; a duplicate would make resume skip a question it never ran.
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetError(f"dataset {name}: item id {item.id!r} appears more than once")
        seen.add(item.id)


def dataset_corpora(items: Iterable[EvalItem]) -> list[CorpusSpec]:
    """The distinct corpora the items need, in first-use order (what to index before a run)."""
    found: dict[str, CorpusSpec] = {}
    for item in items:
        if item.corpus is not None and item.corpus.name not in found:
            found[item.corpus.name] = item.corpus
    return list(found.values())


def build_corpus(
    spec: CorpusSpec,
    index_dir: Path,
    *,
    index_documents: IndexDocuments | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> object:
    """Index a corpus's documents under `spec.name` and return what the indexer returns (for the
    default, an `IndexReport`; re-indexing unchanged documents changes nothing).

    The default indexer is `openheavy.corpus.index_documents`, fed `SourceDoc`s in the corpus's text
    format; it is imported on call, so loading datasets stays light. A given `index_documents` is fed
    `CorpusDoc`s (tests, or another search engine).
    """
    if index_documents is not None:
        return index_documents(spec.documents(), spec.name, index_dir, progress)
    from openheavy.corpus import SourceDoc
    from openheavy.corpus import index_documents as index_into_local

    docs = (SourceDoc(d.id, d.title, d.text, d.url, spec.text_format) for d in spec.documents())
    return index_into_local(docs, spec.name, index_dir, progress)
