"""Claims data: quoted, checkable statements from the summaries, and how each is judged."""

from shortsci_bench.claims.schema import Claim, PaperClaims, load_all, load_paper

__all__ = ["Claim", "PaperClaims", "load_all", "load_paper"]
