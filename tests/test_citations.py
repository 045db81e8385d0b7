"""Citations: resolution (keep opened, report drops, renumber 1..k), markers, run-wide numbering."""

from __future__ import annotations

from fakes import ListSink
from openheavy.citations import (
    Citation,
    RunSources,
    Source,
    cited_numbers,
    renumber_markers,
    replace_markers,
    resolve_citations,
)
from openheavy.types import Document, EventStream


def doc(pid: str) -> Document:
    return Document(pid, pid.split("#")[0], f"title of {pid}", f"file:{pid}", f"text of {pid}")


def test_markers_are_read_in_order_and_rewritten_through_a_mapping() -> None:
    assert cited_numbers("a [3], b [1, 4] and [3].") == [3, 1, 4, 3]
    assert renumber_markers("a [3], b [1, 4] and [9].", {3: 1, 4: 2}) == "a [1], b [2] and."
    footnotes = replace_markers(
        "a [3], b [1, 4]; [x] and [] stay.", lambda ns: "".join(f"[^{n}]" for n in ns)
    )
    assert footnotes == "a [^3], b [^1][^4]; [x] and [] stay."


def test_resolution_keeps_opened_sources_renumbers_them_and_reports_each_drop() -> None:
    sink = ListSink()
    sources = {5: Source(5, doc("a#1"), ("agent-1",)), 2: Source(2, doc("b#1"), ("agent-1",))}
    answer, citations = resolve_citations(
        "x [5], y [7], z [2] and again [5].",
        [2, 8],
        sources,
        drop_reason=lambda ref: f"{ref} unknown",
        stream=EventStream([sink]),
        run_id="r",
        agent="agent-1",
    )
    assert answer == "x [1], y, z [2] and again [1]."
    assert [(c.number, c.ref, c.id) for c in citations] == [(1, 5, "a#1"), (2, 2, "b#1")]
    assert [(e.ref, e.reason) for e in sink.of("CitationDropped")] == [("7", "7 unknown"), ("8", "8 unknown")]


def test_run_sources_number_each_passage_once_with_all_its_readers() -> None:
    sources = RunSources.gather(
        [("agent-1", [doc("a#1"), doc("b#1")]), ("agent-2", [doc("b#1"), doc("c#1")])]
    )
    assert {pid: (s.number, s.read_by) for pid, s in sources.by_id.items()} == {
        "a#1": (1, ("agent-1",)),
        "b#1": (2, ("agent-1", "agent-2")),
        "c#1": (3, ("agent-2",)),
    }
    # agent-2 cited b#1 as its [1] and c#1 as its [2]
    mine = [
        Citation(1, Source(4, doc("b#1"), ("agent-2",))),
        Citation(2, Source(1, doc("c#1"), ("agent-2",))),
    ]
    assert sources.globalize("b [1], c [2]", mine) == "b [2], c [3]"
    adopted = sources.adopt(mine)
    assert [c.to_record() for c in adopted] == [
        {
            "number": 1,
            "ref": 2,
            "id": "b#1",
            "doc_id": "b",
            "title": "title of b#1",
            "url": "file:b#1",
            "read_by": ["agent-1", "agent-2"],
        },
        {
            "number": 2,
            "ref": 3,
            "id": "c#1",
            "doc_id": "c",
            "title": "title of c#1",
            "url": "file:c#1",
            "read_by": ["agent-2"],
        },
    ]
