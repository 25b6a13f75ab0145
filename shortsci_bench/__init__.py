"""shortsci_bench: runnable, checkable reproductions of ShortScience.org summaries."""
