"""Python LLM client libraries: data, rubric, queries, rendering and CLI (issue 6)."""

from knollm.libraries.load import LibraryRecord, load_libraries

__all__ = ["LibraryRecord", "load_libraries"]
